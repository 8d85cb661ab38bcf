"""The loss family as configs: presets compose nets + loss + optimizers, mix with any loss and data, refuse wrong
combinations; the critic diagnostics; the real CLI with model=wgan_gp / model=wgan on images and on 2-D toy data."""

import csv
import logging
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FAST, REPO, compose_train, fit, run_cli, train_in_process, write_image_folder
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ganx.models.gan as gan_module
from ganx.losses import AdversarialLoss
from ganx.models import GAN
from ganx.models.gan import layer_grad_norms
from ganx.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator
from ganx.presets import preset_target
from ganx.resolvers import register_resolvers

register_resolvers()


# --- presets and mixing ----------------------------------------------------------------------------------------------


def test_wgan_preset_is_arjovsky_algorithm_1():
    cfg = compose_train("model=wgan")
    assert (cfg.loss.name, cfg.loss.clip_value, cfg.loss.gp_weight) == ("wasserstein", 0.01, 0.0)
    assert cfg.model.critic_steps == 5
    for opt in (cfg.model.g_optimizer, cfg.model.d_optimizer):
        assert (opt._target_, opt.lr) == ("torch.optim.RMSprop", 5e-5)


def test_wgan_gp_preset_is_gulrajani_algorithm_1():
    cfg = compose_train("model=wgan_gp")
    assert (cfg.loss.name, cfg.loss.gp_weight, cfg.loss.clip_value) == ("wasserstein", 10.0, None)
    assert cfg.model.critic_steps == 5 and cfg.model.discriminator.norm == "layer"
    for opt in (cfg.model.g_optimizer, cfg.model.d_optimizer):
        assert (opt._target_, opt.lr, list(opt.betas)) == ("torch.optim.Adam", 1e-4, [0.0, 0.9])


@pytest.mark.parametrize(
    "overrides, loss_name, gp_weight",
    [
        (["model=lsgan"], "lsgan", 0.0),
        (["model=dcgan", "loss=hinge"], "hinge", 0.0),
        (["model=wgan_gp", "loss.gp_weight=1"], "wasserstein", 1.0),
        (["model=wgan_gp", "loss=hinge"], "hinge", 0.0),  # the command line beats the preset's loss
    ],
)
def test_presets_mix_with_losses(overrides, loss_name, gp_weight):
    cfg = compose_train(*overrides)
    assert (cfg.loss.name, cfg.loss.gp_weight) == (loss_name, gp_weight)


@pytest.mark.parametrize("model", ["gan", "dcgan", "lsgan", "wgan", "wgan_gp"])
def test_every_preset_builds_for_images_and_for_2d_points(model):
    image_model = instantiate(compose_train(f"model={model}", "data=fashion_mnist").model)
    assert image_model.generate(image_model.fixed_noise[:2]).shape == (2, 1, 28, 28)
    for data in ("gaussian_ring", "gaussian_grid"):
        cfg = compose_train(f"model={model}", f"data={data}")
        assert cfg.model.generator._target_ == "ganx.nets.MLPGenerator"
        point_model = instantiate(cfg.model)
        assert point_model.generate(point_model.fixed_noise[:5]).shape == (5, 2)
        assert point_model.loss.name == compose_train(f"model={model}").loss.name  # same loss as on images


def test_nets_can_still_be_chosen_explicitly():
    assert compose_train("model=wgan_gp", "data=gaussian_ring", "model/nets=dcgan").model.generator._target_ == (
        "ganx.nets.DCGANGenerator"
    )


def test_gradient_penalty_with_a_batchnorm_critic_is_refused_from_the_config():
    cfg = compose_train("model=wgan_gp", "model.discriminator.norm=batch", "data=fashion_mnist")
    with pytest.raises(Exception, match="BatchNorm.*norm=layer"):
        instantiate(cfg.model)


def test_weight_clipping_with_adam_warns_citing_the_paper(caplog):
    cfg = compose_train("model=wgan", "model.d_optimizer._target_=torch.optim.Adam", "data=fashion_mnist",
                      "model.generator.base_width=4", "model.discriminator.base_width=4")
    model = instantiate(cfg.model)
    with caplog.at_level(logging.WARNING, logger="ganx.models.gan"):
        model.configure_optimizers()
    assert "Arjovsky et al. 2017" in caplog.text and "Adam" in caplog.text


def test_layer_norm_mlp_critic_keeps_samples_independent():
    critic = MLPDiscriminator(in_shape=(2,), hidden=(8, 8), dropout=0.0, norm="layer")
    x = torch.randn(6, 2)
    assert torch.allclose(critic(x)[:3], critic(x[:3]), atol=1e-6)  # no coupling across the batch
    assert sum(isinstance(m, nn.LayerNorm) for m in critic.modules()) == 2
    with pytest.raises(ValueError, match="norm must be 'none' or 'layer'"):
        MLPDiscriminator(in_shape=(2,), norm="batch")


# --- diagnostics -----------------------------------------------------------------------------------------------------


def test_layer_grad_norms_hand_computed():
    net = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1, bias=False))
    net[0].weight.grad = torch.tensor([[3.0, 0.0]])
    net[0].bias.grad = torch.tensor([4.0])
    net[2].weight.grad = torch.tensor([[-2.0]])
    norms = layer_grad_norms(net)
    assert set(norms) == {"0", "2"}
    assert norms["0"].item() == pytest.approx(5.0) and norms["2"].item() == pytest.approx(2.0)


def tiny_wgan(loss: AdversarialLoss) -> GAN:
    return GAN(
        generator=DCGANGenerator(latent_dim=8, image_size=16, channels=1, base_width=4),
        discriminator=DCGANDiscriminator(image_size=16, channels=1, base_width=4, norm="layer"),
        loss=loss,
        g_optimizer=partial(torch.optim.Adam, lr=1e-4, betas=(0.0, 0.9)),
        d_optimizer=partial(torch.optim.Adam, lr=1e-4, betas=(0.0, 0.9)),
        critic_steps=2,
        latent_dim=8,
        num_fixed_samples=4,
    )


def test_critic_gradient_norms_are_logged_only_on_logging_steps(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gan_module, "layer_grad_norms", lambda m: calls.append(1) or layer_grad_norms(m))
    model = tiny_wgan(AdversarialLoss("wasserstein", gp_weight=10.0))
    images = torch.rand(64, 1, 16, 16) * 2 - 1
    fit(model, 7, DataLoader(TensorDataset(images, torch.zeros(64, dtype=torch.long)), batch_size=8),
        log_every_n_steps=3, logger=CSVLogger(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")))
    norm_keys = {k for k in rows[0] if k.startswith("train/critic_grad_norm/")}
    # Every parameterised critic layer: the 3 convs and the LayerNorm (GroupNorm) between them.
    assert norm_keys == {f"train/critic_grad_norm/net.{i}" for i in (0, 2, 3, 5)}
    assert len(calls) == len(rows) == 2 < 7  # steps 3 and 6: no extra work on the steps Lightning does not log
    for row in rows:
        assert float(row["train/gradient_penalty"]) >= 0 and row["train/wasserstein_estimate"] != ""


# --- the real CLI ----------------------------------------------------------------------------------------------------

SMALL = ["model.generator.base_width=8", "model.discriminator.base_width=8", "model.latent_dim=16",
         "model.num_fixed_samples=16", "trainer.log_every_n_steps=1"]


def read_rows(run: Path) -> list[dict]:
    return [row for f in sorted(run.glob("csv/version_*/metrics.csv")) for row in csv.DictReader(f.open())]


@pytest.mark.e2e
@pytest.mark.parametrize("model, regulariser", [("wgan_gp", "train/gradient_penalty"), ("wgan", None)])
def test_cli_trains_wasserstein_presets_on_an_image_folder(tmp_path, model, regulariser):
    folder = write_image_folder(tmp_path / "images", n=60)
    run = tmp_path / "run"
    train_in_process(f"model={model}", "data=anime", f"data.root={folder}", "data.image_size=32", "data.batch_size=8",
                     "data.num_workers=0", "data.val_size=8", "steps=2", f"hydra.run.dir={run}", *SMALL, *FAST,
                     cwd=tmp_path)
    rows = read_rows(run)
    logged = set().union(*rows)
    assert {"train/wasserstein_estimate", "train/critic_grad_norm/net.0"} <= logged
    assert (regulariser in logged) if regulariser else not any("penalty" in k for k in logged)
    assert max(float(r["trainer/optimizer_steps"]) for r in rows) == 2 * (5 + 1)  # 5 critic steps per G step
    if model == "wgan":  # clipping held after the last critic step
        weights = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        critic = [v for k, v in weights.items() if k.startswith("discriminator.") and "running_" not in k]
        critic = [v for v in critic if v.is_floating_point()]  # parameters; BatchNorm statistics are not clipped
        assert critic and all(v.abs().max() <= 0.01 + 1e-9 for v in critic)


CONV_GENERATORS = ("ganx.nets.DCGANGenerator", "ganx.nets.SNGANResNetGenerator")


def dcgan_net_presets() -> list[str]:
    """The model presets that are the GAN algorithm on convolutional image nets (DCGAN, SN-GAN ResNet): each new one
    is picked up here by itself."""
    presets = sorted(path.stem for path in (REPO / "conf" / "model").glob("*.yaml"))
    return [name for name in presets if preset_target("model", name) == "ganx.models.GAN"
            and compose_train(f"model={name}").model.generator._target_ in CONV_GENERATORS]


@pytest.mark.e2e
def test_cli_trains_every_dcgan_net_preset_two_steps(tmp_path):
    presets = dcgan_net_presets()
    assert {"dcgan", "lsgan", "wgan", "wgan_gp", "dcgan_sn", "sngan", "sngan_ttur"} <= set(presets)
    folder = write_image_folder(tmp_path / "images", n=40)
    sweep = tmp_path / "sweep"
    train_in_process("-m", f"model={','.join(presets)}", "data=anime", f"data.root={folder}", "data.image_size=32",
                     "data.batch_size=4", "data.num_workers=0", "data.val_size=4", "steps=2", "sample_every=2",
                     "checkpoint_every=2", f"hydra.sweep.dir={sweep}", *SMALL, *FAST, cwd=tmp_path)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert {r["overrides"] for r in rows} == {f"model={name}" for name in presets}
    assert all(r["status"] == "finished" and r["generator_steps"] == "2" for r in rows)


@pytest.mark.e2e
def test_cli_toy_run_logs_mode_metrics_and_scatter_plots(tmp_path):
    run = tmp_path / "run"
    train_in_process("model=wgan_gp", "data=gaussian_ring", "data.train_size=2000", "data.val_size=500",
                     "data.batch_size=64", "steps=4", "sample_every=2", "trainer.log_every_n_steps=2",
                     f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    rows = read_rows(run)
    covered = [float(r["val/modes_covered"]) for r in rows if r.get("val/modes_covered")]
    assert len(covered) == 2 and all(0 <= c <= 8 for c in covered)
    assert {"val/high_quality", "val/reverse_kl", "train/critic_grad_norm/net.1"} <= set().union(*rows)
    scatter = Image.open(run / "samples" / "step_0000004.png")
    assert scatter.size == (480, 480)
    ckpt = run / "checkpoints" / "last.ckpt"
    run_cli(f"ckpt={ckpt}", "n=300", f"out={tmp_path / 'points.npz'}", module="ganx.sample", cwd=tmp_path)
    assert np.load(tmp_path / "points.npz")["points"].shape == (300, 2)


def test_gradient_penalty_with_a_packing_critic_is_refused_from_the_config():
    cfg = compose_train("experiment=pacgan_2d", "loss=wasserstein_gp", "model.discriminator.pack=2")
    with pytest.raises(Exception, match="packing critic.*pack=1"):
        instantiate(cfg.model)
