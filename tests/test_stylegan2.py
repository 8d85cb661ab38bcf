"""StyleGAN2 (ganx.nets.stylegan2, ganx.models.StyleGAN2): each part against an independent computation."""

import math
import shutil
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import FAST, cli_in_process, fit, train_in_process, write_image_folder
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import ganx.models.gan as gan_module
import ganx.models.stylegan2 as stylegan2_module
from ganx.callbacks import GeneratorStepCheckpoint
from ganx.checkpoint import CheckpointError
from ganx.losses import StyleGAN2Loss
from ganx.models import StyleGAN2
from ganx.nets.stylegan2 import (
    EqualizedConv2d,
    EqualizedLinear,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    minibatch_stddev,
    modulated_conv2d,
)
from ganx.sample import SampleConfig, sample

TINY = dict(image_size=32, channel_base=256, channel_max=16)


def tiny_generator(**kwargs) -> StyleGAN2Generator:
    return StyleGAN2Generator(**{**dict(latent_dim=8, w_dim=8, mapping_layers=2), **TINY, **kwargs})


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- nets --------------------------------------------------------------------------------------------------------


def test_modulated_conv_equals_a_per_sample_convolution_of_the_modulated_weights():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 8, 8), torch.randn(4, 5, 3, 3), torch.randn(3, 5)
    for demodulate in (True, False):
        grouped = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=1)
        # the training path (activations scaled before and after one shared-weight conv) gives the same
        torch.testing.assert_close(modulated_conv2d(x, weight, styles, demodulate, padding=1, fused=False), grouped)
        for i in range(3):
            w = weight * styles[i].view(1, 5, 1, 1)  # Eq. 1: w'_ijk = s_i w_ijk
            if demodulate:  # Eq. 3: w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)
                w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            torch.testing.assert_close(grouped[i], F.conv2d(x[i:i + 1], w, padding=1)[0])


def test_demodulation_keeps_unit_variance_inputs_at_unit_variance():
    torch.manual_seed(0)
    x = torch.randn(16, 64, 16, 16)
    styles = torch.rand(16, 64) * 3 + 0.1  # arbitrary positive scales per sample and input channel
    out = modulated_conv2d(x, torch.randn(32, 64, 3, 3), styles, padding=1)[:, :, 1:-1, 1:-1]  # no padded borders
    assert abs(out.std().item() - 1) < 0.05
    undemodulated = modulated_conv2d(x, torch.randn(32, 64, 3, 3), styles, demodulate=False, padding=1)
    assert undemodulated.std() > 10  # what demodulation removes


def test_minibatch_stddev_by_hand():
    torch.manual_seed(0)
    x = torch.randn(8, 6, 3, 3)
    out = minibatch_stddev(x, group_size=4, num_channels=2)
    assert out.shape == (8, 8, 3, 3) and torch.equal(out[:, :6], x)
    for i in range(8):
        group = x[[j for j in range(8) if j % 2 == i % 2]]  # 8 / 4 = 2 groups: sample i is in group i mod 2
        for f in range(2):
            part = group[:, 3 * f:3 * f + 3]
            std = ((part - part.mean(0)) ** 2).mean(0).add(1e-8).sqrt().mean()
            torch.testing.assert_close(out[i, 6 + f], torch.full((3, 3), std.item()))
    with pytest.raises(ValueError, match="multiple of it"):
        minibatch_stddev(torch.randn(6, 4, 2, 2), group_size=4)


def test_equalized_learning_rate_scales_weights_at_runtime():
    linear = EqualizedLinear(50, 7, lr_multiplier=0.01)
    x = torch.randn(3, 50)
    expected = x @ (linear.weight * 0.01 / math.sqrt(50)).T + linear.bias * 0.01
    torch.testing.assert_close(linear(x), expected)
    assert abs(linear.weight.std().item() * 0.01 - 1) < 0.1  # stored as N(0, 1 / lr_multiplier^2)
    conv = EqualizedConv2d(6, 4, 3, activation=False)
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight / math.sqrt(6 * 9), conv.bias, padding=1))
    assert abs(conv.weight.std().item() - 1) < 0.15


def test_image_sizes_are_powers_of_two_from_32_to_1024():
    for size in (16, 48, 100, 2048):
        with pytest.raises(ValueError, match=f"image_size={size}.*data.image_size=32, 64"):
            StyleGAN2Generator(image_size=size)
        with pytest.raises(ValueError, match=f"image_size={size}"):
            StyleGAN2Discriminator(image_size=size)
    g = tiny_generator(image_size=64)
    assert g.num_ws == 10 and g(torch.randn(2, 8)).shape == (2, 3, 64, 64)
    assert StyleGAN2Discriminator(image_size=64, channel_base=256, channel_max=16)(torch.randn(4, 3, 64, 64)).shape == (4,)


# Parameter counts of the official networks (NVlabs/stylegan2-ada-pytorch, training/networks.py: Generator and
# Discriminator with z_dim = w_dim = 512, c_dim = 0, img_channels = 3, default mbstd), computed by instantiating that
# code: paper256 (train.py cfg_specs: fmaps 0.5 -> channel_base 16384, channel_max 512, map 8) at 256x256 and the
# "stylegan2" (config F) setting (channel_base 32768) at 1024x1024.
OFFICIAL_COUNTS = {
    (256, 16384): dict(generator=24_767_458, mapping=2_101_248, synthesis=22_666_210, discriminator=24_001_089),
    (1024, 32768): dict(generator=30_370_060, mapping=2_101_248, synthesis=28_268_812, discriminator=29_012_513),
}


@pytest.mark.parametrize("size, base", list(OFFICIAL_COUNTS))
def test_parameter_counts_match_the_official_networks(size, base):
    with torch.device("meta"):  # shapes only
        g = StyleGAN2Generator(image_size=size, channel_base=base)
        d = StyleGAN2Discriminator(image_size=size, channel_base=base)
    official = OFFICIAL_COUNTS[size, base]
    assert count(g) == official["generator"]
    assert (count(g.mapping), count(g.synthesis)) == (official["mapping"], official["synthesis"])
    assert count(d) == official["discriminator"]


def test_truncation_psi_0_gives_the_mean_w_image_and_psi_1_the_untruncated():
    torch.manual_seed(0)
    g = tiny_generator()
    g.train()
    for _ in range(3):
        g.styles(torch.randn(16, 8))  # moves the tracked mean w
    assert g.mapping.w_avg.abs().sum() > 0
    g.eval()
    z = torch.randn(4, 8)
    mean_image = g.synthesis(g.mapping.w_avg.view(1, 1, -1).expand(1, g.num_ws, -1))
    torch.testing.assert_close(g(z, truncation_psi=0.0), mean_image.expand(4, -1, -1, -1))
    torch.testing.assert_close(g(z, truncation_psi=1.0), g.synthesis(g.styles(z)))
    assert not torch.allclose(g(z, truncation_psi=0.7), g(z))


def test_the_generator_samples_in_w_what_ganx_sample_asks_of_it():
    """embed, render and mix (ganx.nets.latent.LatentGenerator): ganx.sample's sampling of a StyleGAN2 generator."""
    torch.manual_seed(0)
    g = tiny_generator().eval()
    z_a, z_b = torch.randn(2, 8), torch.randn(3, 8)
    a, b = g.embed(z_a), g.embed(z_b)
    torch.testing.assert_close(g.render(a, truncation=0.7), g(z_a, truncation_psi=0.7))
    ws = g.mix(a, b, coarse=2)
    assert ws.shape == (6, g.num_ws, a.shape[1])
    assert torch.equal(ws[5, :2], a[1].expand(2, -1)) and torch.equal(ws[5, 2:], b[2].expand(g.num_ws - 2, -1))
    torch.testing.assert_close(g.render(ws[:1]), g.synthesis(ws[:1]))


def test_truncation_cutoff_truncates_the_first_layers_and_leaves_the_rest():
    """truncation_cutoff=N (the official code's): layers < N get w_avg + psi (w - w_avg), the others w itself."""
    torch.manual_seed(0)
    g = tiny_generator()
    g.styles(torch.randn(16, 8))  # training mode: moves the tracked mean w away from 0
    g.eval()
    z, psi, cutoff = torch.randn(4, 8), 0.7, 3
    w, w_avg = g.mapping(z), g.mapping.w_avg
    ws = g.styles(z, truncation_psi=psi, truncation_cutoff=cutoff)
    assert ws.shape == (4, g.num_ws, 8) and 0 < cutoff < g.num_ws
    for layer in range(g.num_ws):
        expected = w_avg + psi * (w - w_avg) if layer < cutoff else w
        torch.testing.assert_close(ws[:, layer], expected, msg=f"layer {layer}")
    torch.testing.assert_close(g(z, psi, cutoff), g.synthesis(ws))
    torch.testing.assert_close(g.styles(z, psi), g.styles(z, psi, truncation_cutoff=g.num_ws))  # None: every layer


def test_w_avg_tracks_the_mean_w_in_training_mode_only():
    g = tiny_generator(w_avg_decay=0.5)
    z = torch.randn(32, 8)
    with torch.no_grad():
        w = g.mapping.layers(z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt())
    g.mapping(z)
    torch.testing.assert_close(g.mapping.w_avg, 0.5 * w.mean(0))
    g.eval()
    g.mapping(torch.randn(32, 8))
    torch.testing.assert_close(g.mapping.w_avg, 0.5 * w.mean(0))


# --- the model ---------------------------------------------------------------------------------------------------


def tiny_stylegan2(loss: StyleGAN2Loss | None = None, **kwargs) -> StyleGAN2:
    adam = partial(torch.optim.Adam, lr=2e-3, betas=(0.0, 0.99))
    return StyleGAN2(
        generator=tiny_generator(), discriminator=StyleGAN2Discriminator(mbstd_group_size=2, **TINY),
        loss=loss or StyleGAN2Loss(r1_weight=1.0, reg_every=4, pl_weight=2.0, pl_every=2),
        g_optimizer=adam, d_optimizer=adam, latent_dim=8, latent_distribution="normal", num_fixed_samples=4,
        **kwargs,
    )


def images(n: int = 32) -> DataLoader:
    data = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(TensorDataset(data, torch.zeros(n, dtype=torch.long)), batch_size=4)


def counting(monkeypatch, module, name: str) -> list[int]:
    calls, original = [], getattr(module, name)

    def wrapped(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_lazy_r1_and_path_length_run_on_their_intervals(monkeypatch):
    r1 = counting(monkeypatch, gan_module, "r1_penalty")
    pl = counting(monkeypatch, stylegan2_module, "path_length_penalty")
    torch.manual_seed(0)
    model = tiny_stylegan2(StyleGAN2Loss(r1_weight=1.0, reg_every=16, pl_weight=2.0, pl_every=4))
    fit(model, steps=8, train_data=images())
    assert len(r1) == 1 and len(pl) == 2  # critic steps 0 (of 8); generator steps 0 and 4
    assert model.pl_mean > 0
    g_opt, d_opt = model.optimizers()
    # Appendix B: lr * c, betas ** c, c = k / (k + 1).
    assert g_opt.param_groups[0]["lr"] == pytest.approx(2e-3 * 4 / 5)
    assert g_opt.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert d_opt.param_groups[0]["lr"] == pytest.approx(2e-3 * 16 / 17)

    pl.clear()
    model = tiny_stylegan2(StyleGAN2Loss(r1_weight=1.0, reg_every=16, pl_weight=0.0))  # loss.pl_weight=0: off
    fit(model, steps=4, train_data=images())
    assert not pl and model.pl_mean == 0
    assert model.optimizers()[0].param_groups[0]["lr"] == pytest.approx(2e-3)


def test_path_length_penalty_by_finite_differences():
    from ganx.losses import path_length_penalty

    torch.manual_seed(0)
    matrix = torch.randn(2 * 3, 4 * 4)  # images = ws @ matrix: J is known, so the lengths have a closed form
    ws = torch.randn(5, 2, 3, requires_grad=True)
    images = (ws.reshape(5, 6) @ matrix).reshape(5, 1, 4, 4)
    torch.manual_seed(1)
    penalty, mean = path_length_penalty(images, ws, torch.zeros(()), decay=0.5)
    torch.manual_seed(1)
    y = torch.randn(5, 1, 4, 4) / 4
    lengths = (y.reshape(5, 16) @ matrix.T).reshape(5, 2, 3).square().sum(2).mean(1).sqrt()
    torch.testing.assert_close(mean, 0.5 * lengths.mean())
    torch.testing.assert_close(penalty, (lengths - mean).square().mean())


def test_style_mixing_swaps_the_tail_of_the_styles():
    model = tiny_stylegan2(style_mixing_prob=1.0)
    z = torch.randn(3, 8)
    ws = model.mixed_styles(z)
    unmixed = model.generator.styles(z, track_w_avg=False)
    crossover = next(i for i in range(ws.shape[1]) if not torch.equal(ws[:, i], unmixed[:, i]))
    assert 1 <= crossover < ws.shape[1] and torch.equal(ws[:, :crossover], unmixed[:, :crossover])
    model = tiny_stylegan2(style_mixing_prob=0.0)
    torch.testing.assert_close(model.mixed_styles(z), model.generator.styles(z, track_w_avg=False))


def checkpointing(tmp_path, every: int) -> dict:
    return dict(enable_checkpointing=True, default_root_dir=tmp_path,
                callbacks=[GeneratorStepCheckpoint(every, dirpath=tmp_path / "checkpoints", save_last=True)])


def test_resume_is_bit_exact_with_w_avg_pl_mean_and_the_ema(tmp_path):
    ema = {"kimg": 0.01, "rampup": 0.05}
    torch.manual_seed(0)
    full = tiny_stylegan2(ema=ema)
    # 3 batches per epoch: the checkpoint at step 3 is at an epoch end (a plain DataLoader cannot resume mid-epoch).
    fit(full, steps=6, train_data=images(12), **checkpointing(tmp_path / "full", 3))
    torch.manual_seed(123)  # the checkpoint restores every RNG
    resumed = tiny_stylegan2(ema=ema)
    fit(resumed, steps=6, train_data=images(12), ckpt_path=str(tmp_path / "full" / "checkpoints" / "step_0000003.ckpt"),
        **checkpointing(tmp_path / "resumed", 3))
    a, b = full.state_dict(), resumed.state_dict()
    assert {"pl_mean", "generator.mapping.w_avg", "generator_ema.module.mapping.w_avg"} <= set(a)
    assert a["pl_mean"] > 0 and a["generator.mapping.w_avg"].abs().sum() > 0
    torch.testing.assert_close(a["generator_ema.module.mapping.w_avg"], a["generator.mapping.w_avg"], rtol=0, atol=0)
    for key, value in a.items():
        assert torch.equal(value, b[key]), f"{key} differs after resume"


def test_bf16_mixed_trains_with_finite_losses():
    torch.manual_seed(0)
    model = tiny_stylegan2(StyleGAN2Loss(r1_weight=1.0, reg_every=2, pl_weight=2.0, pl_every=2))
    fit(model, steps=4, train_data=images(), precision="bf16-mixed")
    assert model.generator_steps == 4 and torch.isfinite(model.pl_mean) and model.pl_mean > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


# --- the CLIs ----------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_cli_trains_stylegan2_lite_and_samples_truncated_mixed_and_interpolated(tmp_path):
    folder = write_image_folder(tmp_path / "images", n=24)
    run = tmp_path / "run"
    train_in_process("model=stylegan2_lite", "data=anime", f"data.root={folder}", "data.image_size=32",
                     "data.batch_size=4", "data.num_workers=0", "data.val_size=4", "steps=2", "sample_every=2",
                     "checkpoint_every=2", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert "pl_mean" in state and "generator_ema.module.mapping.w_avg" in state
    cli_in_process("ganx.sample", f"ckpt={ckpt}", "n=9", "truncation=0.7", "mix=true", f"out={tmp_path / 'mix.png'}",
                   cwd=tmp_path)
    assert Image.open(tmp_path / "mix.png").size == (4 * 34 + 2, 4 * 34 + 2)  # (3 + 1) x (3 + 1) cells of 32 + 2 px
    cli_in_process("ganx.sample", f"ckpt={ckpt}", "n=20", "interpolate=true", "truncation=0.7",
                   f"out={tmp_path / 'walk.png'}", cwd=tmp_path)
    assert Image.open(tmp_path / "walk.png").size == (10 * 34 + 2, 2 * 34 + 2)

    def images(name: str, **options) -> np.ndarray:
        sample(SampleConfig(ckpt=str(ckpt), n=4, out=str(tmp_path / f"{name}.npz"), **options))
        return np.load(tmp_path / f"{name}.npz")["images"]

    truncated, coarse_only = images("all", truncation=0.2), images("coarse", truncation=0.2, truncation_cutoff=2)
    np.testing.assert_array_equal(images("cutoff_all", truncation=0.2, truncation_cutoff=8), truncated)  # 8 ws at 32x32
    assert not np.array_equal(coarse_only, truncated) and not np.array_equal(coarse_only, images("none"))
    with pytest.raises(CheckpointError, match="truncation_cutoff=9: give 1..8"):
        images("bad", truncation=0.2, truncation_cutoff=9)
    cli_in_process("ganx.sample", f"ckpt={ckpt}", "n=4", "ema=false", f"out={tmp_path / 'raw'}/", cwd=tmp_path)
    assert len(list((tmp_path / "raw").glob("*.png"))) == 4
    shutil.rmtree(tmp_path / "raw")

