"""Config checks that run before anything is built: which model presets can train on which data presets."""

import pytest
from helpers import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

import ganx.models
from ganx.data import BatchKind
from ganx.models import AdversarialModule
from ganx.preflight import check_model_data_pairing
from ganx.presets import CONF_DIR, preset_target
from ganx.resolvers import register_resolvers

register_resolvers()
MODELS = sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))


def model_class(preset: str) -> type:
    return get_class(preset_target("model", preset))


# The presets whose training step reads labels, image pairs or images only, as their classes declare (trains_on).
NOT_FOR_POINTS = {name for name in MODELS if BatchKind.POINTS not in model_class(name).trains_on}


def compose_pairing(model: str, data: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"model={model}", f"data={data}"])


def test_every_model_preset_composes_with_the_toy_data_and_only_the_fitting_ones_pass():
    # The toy data swap the model's nets (conf/data/gaussian_ring.yaml): that override must compose for every model,
    # so a pairing that does not fit reaches the check below instead of Hydra's "Could not override 'model/nets'".
    assert NOT_FOR_POINTS and NOT_FOR_POINTS < set(MODELS)
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
    exported = {cls for cls in vars(ganx.models).values() if isinstance(cls, type) and issubclass(cls, AdversarialModule)}
    assert exported - {AdversarialModule} <= ganx_models
    assert {model_class(name) for name in MODELS} <= ganx_models
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


def test_model_presets_override_only_groups_that_train_yaml_lists_before_model():
    """A new preset may override loss, optim, model/ema or augment without touching train.yaml's defaults order."""
    def defaults(path):
        return OmegaConf.to_container(OmegaConf.load(path)).get("defaults", [])

    groups = [next(iter(entry)) for entry in defaults(CONF_DIR / "train.yaml") if isinstance(entry, dict)]
    before_model = set(groups[:groups.index("model")])
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        for entry in defaults(path):
            key = next(iter(entry)) if isinstance(entry, dict) else entry
            if key.startswith("override /"):
                group = key.removeprefix("override /").partition("@")[0]
                assert group in before_model, f"{path.name} overrides {group}, which conf/train.yaml lists after model"


def test_every_noise_to_image_preset_has_a_generator_that_ganx_sample_can_ask():
    """ganx.sample asks the generator what it can do (ganx.nets.latent.LatentGenerator), not its class: a GAN preset
    whose generator is not one fails at sampling (FastGAN's did)."""
    from ganx.models import GAN
    from ganx.nets.latent import LatentGenerator

    presets = [m for m in MODELS if issubclass(model_class(m), GAN)]
    assert "projected_gan" in presets and "dcgan" in presets
    for model in presets:
        generator = get_class(compose_pairing(model, "anime").model.generator._target_)
        assert issubclass(generator, LatentGenerator), f"model={model}: {generator.__name__} is no LatentGenerator"


def test_a_machine_local_config_is_composed_when_present_and_not_needed_otherwise(tmp_path):
    """Machine-specific settings (a data folder of this machine) live in an untracked conf/local/default.yaml, not in
    the shipped data configs (issue #26.6: they named ../shared paths)."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    assert not (conf / "local").exists()  # a fresh clone: composes without it
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        assert compose("train", overrides=["data=anime"]).data.root != "/data/my-faces"
    (conf / "local").mkdir()
    (conf / "local" / "default.yaml").write_text("# @package _global_\ndata:\n  root: /data/my-faces\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        assert compose("train", overrides=["data=anime"]).data.root == "/data/my-faces"
    shipped = [p for p in CONF_DIR.rglob("*.yaml") if "../shared" in p.read_text()]
    assert not shipped, f"machine-specific paths in shipped configs: {shipped}"
    # #30.6: nor in the README and the notebook a new user follows (experiments/*/README.md record where runs read data)
    for doc in (REPO / "README.md", REPO / "notebooks" / "quickstart.ipynb"):
        assert "../shared/data" not in doc.read_text(), f"{doc.name} names this machine's data folder"
