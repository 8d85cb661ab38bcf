"""The 2-D Gaussian mixtures, the mode-coverage metrics on hand-made samples, and their training-time callback."""

import csv
import math
from functools import partial

import lightning as L
import pytest
import torch
from helpers import fit
from lightning.pytorch.loggers import CSVLogger

from ganx.data import DataError, GaussianMixtureDataModule
from ganx.data.toy import mixture_modes, sample_mixture
from ganx.losses import AdversarialLoss
from ganx.metrics.modes import ModeCoverage, mode_histogram, mode_stats, reverse_kl_to_uniform
from ganx.models import GAN
from ganx.nets import MLPDiscriminator, MLPGenerator

RING = mixture_modes("ring", 8, 2.0)


def test_ring_and_grid_layouts():
    assert torch.allclose(RING.norm(dim=1), torch.full((8,), 2.0))
    assert torch.allclose(RING[0], torch.tensor([2.0, 0.0])) and torch.allclose(RING[2], torch.tensor([0.0, 2.0]), atol=1e-6)
    grid = mixture_modes("grid", 25, 2.0)
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(p) for p in grid.tolist()}) == 25
    with pytest.raises(DataError, match="num_modes=24 is not a square"):
        mixture_modes("grid", 24, 2.0)


def test_samples_drawn_from_the_mixture_cover_every_mode():
    for modes, std in ((RING, 0.02), (mixture_modes("grid", 25, 2.0), 0.05)):
        points, _ = sample_mixture(modes, std, 2500, torch.Generator().manual_seed(0))
        stats = mode_stats(points, modes, std)
        assert stats.modes_covered == len(modes)
        # P(||x - mu|| < 3 sd) for a 2-D isotropic Gaussian is 1 - exp(-9/2) = 0.989
        assert stats.high_quality > 0.97
        assert stats.reverse_kl < 0.05


def test_a_collapsed_generator_covers_one_mode():
    stats = mode_stats(RING[3].expand(500, 2).clone(), RING, 0.02)
    assert stats.modes_covered == 1 and stats.high_quality == 1.0
    assert stats.reverse_kl == pytest.approx(math.log(8))


def test_points_off_every_mode_are_not_high_quality():
    stats = mode_stats(torch.zeros(100, 2), RING, 0.02)  # the ring's centre, 100 sd from every mode
    assert stats.modes_covered == 0 and stats.high_quality == 0.0 and math.isnan(stats.reverse_kl)


def test_three_standard_deviations_is_the_boundary():
    std = 0.1
    points = torch.stack([RING[0] + torch.tensor([2.9 * std, 0.0]), RING[1] + torch.tensor([0.0, 3.1 * std])])
    assert mode_histogram(points, RING, std).tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert mode_stats(points, RING, std).high_quality == 0.5


def test_reverse_kl_hand_computed():
    # q = (1/2, 0, 1/4, 1/4): 1/2 log(4/2) + 2 * 1/4 log(4/4) = log(2) / 2
    assert reverse_kl_to_uniform(torch.tensor([2, 0, 1, 1])) == pytest.approx(math.log(2) / 2)
    assert reverse_kl_to_uniform(torch.tensor([5, 5, 5])) == pytest.approx(0.0)


def test_mode_stats_rejects_images():
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        mode_stats(torch.zeros(4, 1, 2, 2), RING, 0.02)


def make_toy(**kwargs) -> GaussianMixtureDataModule:
    dm = GaussianMixtureDataModule(**{"train_size": 512, "val_size": 64, "batch_size": 32, **kwargs})
    dm.setup()
    return dm


def test_toy_data_module_batches_points_with_their_mode():
    dm = make_toy(layout="grid", num_modes=25, std=0.05, critic_steps=3)
    points, index = next(iter(dm.train_dataloader()))
    assert points.shape == (96, 2) and points.dtype == torch.float32 and index.dtype == torch.int64
    assert ((points - dm.modes[index]).norm(dim=1) < 5 * 0.05).all()
    real, _ = next(iter(dm.real_dataloader(batch_size=64)))
    assert real.shape == (64, 2)
    summary = dm.summary()
    assert (summary["source"], summary["num_modes"], summary["train_size"], summary["val_size"]) == ("gaussian_grid", 25, 512, 64)
    assert torch.equal(make_toy(seed=3).train_set.tensors[0], make_toy(seed=3).train_set.tensors[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"layout": "spiral"}, "data.layout must be one of"), ({"std": 0.0}, "must be > 0"), ({"num_modes": 0}, "num_modes")],
)
def test_toy_data_module_rejects_bad_settings(kwargs, message):
    with pytest.raises(DataError, match=message):
        GaussianMixtureDataModule(**kwargs)


def toy_gan() -> GAN:
    return GAN(
        generator=MLPGenerator(latent_dim=4, out_shape=(2,), hidden=(16,), out_activation="none"),
        discriminator=MLPDiscriminator(in_shape=(2,), hidden=(16,), dropout=0.0),
        loss=AdversarialLoss("hinge"),
        g_optimizer=partial(torch.optim.Adam, lr=1e-3),
        d_optimizer=partial(torch.optim.Adam, lr=1e-3),
        latent_dim=4,
        num_fixed_samples=50,
    )


def test_mode_coverage_is_logged_during_training_and_samples_are_scatter_plots(tmp_path):
    model, callback = toy_gan(), ModeCoverage(every_n_steps=2, num_samples=100)
    fit(model, 3, datamodule=make_toy(), callbacks=[callback], logger=CSVLogger(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")))
    logged = [(int(r["step"]), float(r["val/modes_covered"])) for r in rows if r.get("val/modes_covered")]
    assert [step for step, _ in logged] == [2, 3]  # every 2 generator steps, and at the end
    assert all(0 <= covered <= 8 for _, covered in logged)
    image = model.visualize()
    assert image.shape[0] == 3 and image.shape[1] > 100 and 0 <= image.min() and image.max() <= 1


def test_mode_coverage_on_image_data_is_refused_before_training():
    class Images(L.LightningDataModule):
        pass

    trainer = type("T", (), {"datamodule": Images(), "loggers": []})()
    with pytest.raises(ValueError, match=r"Gaussian-mixture data .* got Images; remove it with ~callbacks.mode_coverage"):
        ModeCoverage(every_n_steps=1).setup(trainer, toy_gan(), "fit")
