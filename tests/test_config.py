"""Config checks that run before anything is built: which model presets can train on which data presets."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from ganx.config import CONF_DIR, check_model_data_pairing, preset_target, register_resolvers
from ganx.data import BatchKind
from ganx.models import ACGAN, GAN, AdversarialModule, ConditionalGAN, CycleGAN, Pix2Pix

register_resolvers()
MODELS = sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))
# The presets whose training step reads labels or image pairs: 2-D points do not fit them.
NOT_FOR_POINTS = {"cgan", "acgan", "pix2pix", "cyclegan", "stylegan2", "stylegan2_lite"}


def compose_pairing(model: str, data: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"model={model}", f"data={data}"])


def test_every_model_preset_composes_with_the_toy_data_and_only_the_fitting_ones_pass():
    # The toy data swap the model's nets (conf/data/gaussian_ring.yaml): that override must compose for every model,
    # so a pairing that does not fit reaches the check below instead of Hydra's "Could not override 'model/nets'".
    assert NOT_FOR_POINTS < set(MODELS)
    for model in MODELS:
        cfg = compose_pairing(model, "gaussian_ring")
        if model in NOT_FOR_POINTS:
            with pytest.raises(ValueError, match=f"model={model} trains on .* but data=gaussian_ring yields 2-D points"):
                check_model_data_pairing(cfg, {"model": model, "data": "gaussian_ring"})
        else:
            check_model_data_pairing(cfg, {"model": model, "data": "gaussian_ring"})
            assert cfg.model.generator.out_shape == [2], f"model={model} did not get the 2-D nets"


def test_a_wrong_pairing_names_the_presets_that_fit_both_sides():
    cfg = compose_pairing("gan", "paired")  # would otherwise train on the input half of each pair, silently
    with pytest.raises(ValueError) as err:
        check_model_data_pairing(cfg, {"model": "gan", "data": "paired"})
    message = str(err.value)
    assert "data=paired yields aligned (input, target) image pairs" in message
    assert "data=mnist" in message and "data=gaussian_ring" in message and "data=anime_colorize" not in message
    assert "(model=pix2pix)" in message


@pytest.mark.parametrize("model, data", [("cyclegan", "unpaired"), ("pix2pix", "anime_colorize"), ("cgan", "mnist"),
                                         ("lsgan", "anime")])
def test_fitting_pairings_pass(model: str, data: str):
    check_model_data_pairing(compose_pairing(model, data), {"model": model, "data": data})


def subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *subclasses(direct)}}


def test_every_model_declares_the_batch_kinds_it_trains_on():
    ganx_models = {cls for cls in subclasses(AdversarialModule) if cls.__module__.startswith("ganx.")}
    assert {GAN, ConditionalGAN, ACGAN, CycleGAN, Pix2Pix} <= ganx_models
    assert {get_class(preset_target("model", name)) for name in MODELS} <= ganx_models
    for cls in ganx_models:
        assert cls.trains_on and all(isinstance(kind, BatchKind) for kind in cls.trains_on), cls.__name__


@pytest.mark.parametrize("target", ["ganx.models.base.AdversarialModule", "lightning.pytorch.LightningModule"])
def test_a_model_that_declares_no_batch_kinds_is_refused(target: str):
    # Before, such a model skipped the check silently and met any data.
    cfg = OmegaConf.create({"model": {"_target_": target}, "data": {"_target_": "ganx.data.MNISTDataModule"}})
    with pytest.raises(TypeError, match=rf"{target.rpartition('.')[2]} does not declare trains_on.*see AdversarialModule"):
        check_model_data_pairing(cfg, {"model": "custom", "data": "mnist"})


def test_preset_target_follows_the_preset_a_preset_extends():
    assert preset_target("model", "lsgan") == preset_target("model", "dcgan") == "ganx.models.GAN"
    assert preset_target("data", "anime_colorize") == "ganx.data.PairedDataModule"
