"""Quality toolkit (issue #14): the EMA generator and DiffAugment / ADA, checked against hand computations."""

import copy
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from helpers import FAST, fit, run_cli, tiny_gan, train_in_process
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ganx.augment import AdaptiveDiffAugment, DiffAugment, brightness, contrast, cutout, saturation, translation
from ganx.checkpoint import build_model, load_checkpoint
from ganx.latent import draw_latent
from ganx.losses import AdversarialLoss
from ganx.models import GAN, CycleGAN
from ganx.models.common import AveragedGenerator, ema_decay
from ganx.nets import MLPDiscriminator, MLPGenerator
from ganx.nets.batchnorm import standing_statistics
from ganx.sample import SampleConfig, sample


def loader(n: int = 64, shape=(1, 4, 4)) -> DataLoader:
    return DataLoader(TensorDataset(torch.rand(n, *shape) * 2 - 1, torch.zeros(n, dtype=torch.long)), batch_size=8)


class RecordGenerator(L.Callback):
    """Keeps a copy of G's weights after every training step (after the generator update)."""

    def __init__(self):
        self.weights = []

    def on_train_batch_end(self, trainer, module, *args):
        self.weights.append([p.detach().clone() for p in module.generator.parameters()])


class CountingAugment(AdaptiveDiffAugment):
    """Records the batch size of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def __call__(self, images):
        self.calls.append(len(images))
        return super().__call__(images)


# --- EMA generator ---------------------------------------------------------------------------------------------------

def test_ema_decay_schedule_by_hand():
    assert ema_decay(0, 8, decay=0.999) == 0.999
    # StyleGAN2-ADA: half-life min(kimg * 1000, rampup * images seen) images, beta = 0.5 ** (batch / half-life)
    assert ema_decay(0, 8, kimg=0.01, rampup=0.5) == 0.0  # nothing seen yet: the first update copies
    assert ema_decay(8, 8, kimg=0.01, rampup=0.5) == pytest.approx(0.5 ** (8 / 4))
    assert ema_decay(16, 8, kimg=0.01, rampup=0.5) == pytest.approx(0.5)
    assert ema_decay(24, 8, kimg=0.01, rampup=0.5) == pytest.approx(0.5 ** (8 / 10))  # capped by kimg
    assert ema_decay(10**6, 8, kimg=0.01) == pytest.approx(0.5 ** 0.8)


@pytest.mark.parametrize("ema", [{"decay": 0.7}, {"kimg": 0.01, "rampup": 0.5}])
def test_ema_weights_are_the_hand_computed_exponential_average(ema):
    torch.manual_seed(0)
    model = tiny_gan(ema=ema)
    expected = [p.detach().clone() for p in model.generator.parameters()]  # theta_ema starts at G's initial weights
    record = RecordGenerator()
    fit(model, 4, loader(), callbacks=[record])
    for step, weights in enumerate(record.weights):
        images_seen = step * 8
        beta = ema.get("decay") or 0.5 ** (8 / max(min(10, images_seen * 0.5), 1e-8))
        expected = [beta * e + (1 - beta) * w for e, w in zip(expected, weights, strict=True)]
    for e, p in zip(expected, model.generator_ema.module.parameters(), strict=True):
        torch.testing.assert_close(p, e, rtol=1e-6, atol=1e-7)
    assert not any(p.requires_grad for p in model.generator_ema.parameters())
    assert int(model.generator_ema.n_averaged) == 5  # the initial copy + 4 updates


def test_ema_copies_batchnorm_buffers_instead_of_averaging_them():
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    averaged = AveragedGenerator(generator, decay=0.5)
    before = [p.detach().clone() for p in averaged.module.parameters()]
    generator(torch.randn(16, 4) * 3 + 2)  # training-mode forward: new running statistics
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(1.0)
    averaged.update(generator, images_seen=16, batch_images=16)
    for name, buffer in generator.named_buffers():
        assert torch.equal(dict(averaged.module.named_buffers())[name], buffer), name
    for b, p, a in zip(before, generator.parameters(), averaged.module.parameters(), strict=True):
        torch.testing.assert_close(a, 0.5 * b + 0.5 * p)


def test_standing_statistics_are_the_batch_statistics_of_the_networks_own_weights():
    # A Linear + BatchNorm net whose live running statistics are wrong for it: standing_statistics must replace them
    # with the mean and (unbiased) variance of the BatchNorm inputs over every pass, recomputed here by hand.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(5.0)
    net[1].running_var.fill_(9.0)
    net.eval()  # as a sampler calls it: the mode must be restored, not left in train mode

    def draw(n, rng):
        return (torch.randn(n, 3, generator=rng) * 2 + 1,)

    standing_statistics(net, draw, batches=3, batch_size=50, seed=7)
    rng = torch.Generator().manual_seed(7)
    with torch.no_grad():
        hidden = [net[0](draw(50, rng)[0]) for _ in range(3)]
    torch.testing.assert_close(net[1].running_mean, torch.cat(hidden).mean(0), rtol=1e-5, atol=1e-5)
    # update_bn's cumulative average of per-batch unbiased variances (equal batch sizes)
    torch.testing.assert_close(net[1].running_var, torch.stack([h.var(0) for h in hidden]).mean(0), rtol=1e-5, atol=1e-5)
    assert net[1].momentum == 0.1 and not net.training  # momentum and mode restored


def test_the_ema_generator_samples_with_statistics_of_its_own_weights():
    model = tiny_gan(ema={"decay": 0.5},
                     generator=MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(16,), batch_norm=True))
    fit(model, 3, loader())
    averaged = model.generator_ema.module
    copied = [b.clone() for b in averaged.buffers()]
    assert not model.generator_ema.statistics_match  # just updated: the live generator's statistics
    sampler = model.sampling_generator()
    assert sampler is averaged and model.generator_ema.statistics_match
    assert any(not torch.equal(a, b) for a, b in zip(copied, averaged.buffers(), strict=True))
    expected = copy.deepcopy(averaged)
    standing_statistics(expected, model.generator_inputs)
    for a, b in zip(expected.buffers(), averaged.buffers(), strict=True):
        torch.testing.assert_close(a, b)


def test_samples_and_metrics_come_from_the_ema_generator_unless_switched_off():
    model = tiny_gan(ema={"decay": 0.5})
    fit(model, 2, loader())
    z = model.sample_latent(5)
    with torch.no_grad():
        ema_out, raw_out = model.generator_ema.module.eval()(z), model.generator.eval()(z)
    assert not torch.allclose(ema_out, raw_out)
    assert torch.equal(model.generate(z), ema_out)
    assert torch.equal(model.generate_for_metrics((torch.zeros(3, 1, 4, 4), None), 0)[1],
                       model.generator_ema.module(model.sample_latent(3, model.metrics_rng(0))))
    model.sample_with_ema = False
    assert torch.equal(model.generate(z), raw_out)


def test_ema_off_by_default_and_refused_where_not_supported():
    assert tiny_gan().generator_ema is None
    assert tiny_gan(ema={"decay": None, "kimg": None, "rampup": None}).generator_ema is None  # conf/model/ema/none
    with pytest.raises(ValueError, match="decay .* or kimg .* not both"):
        tiny_gan(ema={"decay": 0.9, "kimg": 10})
    with pytest.raises(ValueError, match="rampup=0.05 caps the kimg half-life"):
        tiny_gan(ema={"decay": 0.9, "rampup": 0.05})
    with pytest.raises(ValueError, match=r"model.ema.decay must be in \[0, 1\)"):
        tiny_gan(ema={"decay": 1.5})


def cyclegan(**run_options) -> CycleGAN:
    net = partial(nn.Conv2d, 3, 3, 1)
    return CycleGAN(net(), net(), net(), net(), AdversarialLoss("lsgan"), torch.optim.Adam, torch.optim.Adam,
                    **run_options)


def test_translation_models_refuse_augment_and_ema_with_the_reason():
    with pytest.raises(ValueError, match="not supported by CycleGAN: DiffAugment and ADA .* augment=none"):
        cyclegan(augment=DiffAugment())
    with pytest.raises(ValueError, match="model.ema=.* not supported by CycleGAN"):
        cyclegan(ema={"decay": 0.999})
    cyclegan(augment=DiffAugment(policy=[]), ema={"decay": None})  # the defaults are fine


# --- DiffAugment / ADA -----------------------------------------------------------------------------------------------

def same_images(n: int = 16, size: int = 8) -> torch.Tensor:
    return torch.linspace(-1, 1, 3 * size * size).reshape(1, 3, size, size).repeat(n, 1, 1, 1)


@pytest.mark.parametrize("op", [brightness, saturation, contrast, translation, cutout])
def test_every_image_draws_its_own_parameters(op):
    torch.manual_seed(0)
    out = op(same_images())
    assert out.shape == (16, 3, 8, 8)
    distinct = {tuple(image.flatten().tolist()) for image in out}
    assert len(distinct) > 2, f"{op.__name__} applied one draw to the whole batch"


def test_color_ops_by_hand():
    x = same_images(4)
    torch.manual_seed(1)
    r = torch.rand(4, 1, 1, 1)
    torch.manual_seed(1)
    torch.testing.assert_close(brightness(x), x + r - 0.5)
    torch.manual_seed(1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(contrast(x), (x - mean) * (r + 0.5) + mean)


def test_translation_shifts_each_image_with_zero_fill_and_cutout_zeroes_one_square():
    torch.manual_seed(0)
    x = torch.arange(1, 65, dtype=torch.float32).reshape(1, 1, 8, 8).repeat(32, 1, 1, 1)
    for image in translation(x):
        shifts = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)  # 1/8 of 8 pixels: up to 1 pixel
                  if torch.equal(image[0], shifted(x[0, 0], dy, dx))]
        assert shifts, "not a translation of the input by at most 1 pixel"
    for image in cutout(x):
        zeros = (image[0] == 0).nonzero()
        rows, cols = zeros[:, 0], zeros[:, 1]
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert height <= 4 and width <= 4 and len(zeros) == height * width  # one square of half the size, clipped


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(image, [1, 1, 1, 1])
    h, w = image.shape
    return padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def test_empty_policy_is_the_identity_and_draws_nothing():
    x = same_images(4)
    state = torch.get_rng_state()
    assert DiffAugment(policy=[])(x) is x
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="unknown transform.*'rotate'"):
        DiffAugment(policy=["rotate"])
    with pytest.raises(ValueError, match="2-D points"):
        DiffAugment()(torch.zeros(4, 2))


def test_each_image_takes_a_transform_with_probability_p():
    torch.manual_seed(0)
    out = DiffAugment(policy=["cutout"], p=0.3)(torch.ones(2000, 1, 8, 8))
    augmented = (out == 0).flatten(1).any(1).float().mean().item()
    assert augmented == pytest.approx(0.3, abs=0.04)


def test_ada_moves_p_by_the_sign_of_r_t_at_the_papers_speed():
    ada = AdaptiveDiffAugment(interval=2, speed_kimg=1.0)  # 1000 images move p by 1
    for _ in range(2):
        ada.observe(torch.tensor(0.9), 100)  # r_t = 0.9 > 0.6: overfitting, more augmentation
    assert ada.p == pytest.approx(0.2)
    ada.observe(torch.tensor(0.9), 100)
    assert ada.p == pytest.approx(0.2)  # adjusted only every `interval` critic steps
    ada.observe(torch.tensor(-0.5), 100)  # r_t = 0.2 < 0.6
    assert ada.p == pytest.approx(0.0)
    for _ in range(2):
        ada.observe(torch.tensor(0.0), 100)
    assert ada.p == 0.0  # clamped at 0
    assert AdaptiveDiffAugment().speed_kimg * 1000 == 500_000  # 0 -> 1 in 500k images (Karras et al. 2020)


def test_ada_p_and_its_statistic_survive_a_checkpoint():
    model = tiny_gan(augment=AdaptiveDiffAugment(interval=3, p=0.25))
    model.augment.observe(torch.tensor(0.5), 8)
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    restored = tiny_gan(augment=AdaptiveDiffAugment(interval=3))
    restored.on_load_checkpoint(checkpoint)
    assert restored.augment.p == 0.25 and restored.augment.images == 8
    assert [s.item() for s in restored.augment.signs] == [0.5]


def test_gradients_flow_through_the_augmentation_to_the_generator():
    torch.manual_seed(0)
    generator = MLPGenerator(latent_dim=4, out_shape=(3, 8, 8), hidden=(16,))
    discriminator = MLPDiscriminator(in_shape=(3, 8, 8), hidden=(16,), dropout=0.0)
    augment = DiffAugment()
    discriminator(augment(generator(torch.randn(8, 4)))).mean().backward()
    grads = [p.grad for p in generator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


def test_gan_steps_augment_real_and_fake_and_log_p():
    model = GAN(MLPGenerator(latent_dim=4, out_shape=(1, 4, 4), hidden=(16,)),
                MLPDiscriminator(in_shape=(1, 4, 4), hidden=(16,), dropout=0.0), AdversarialLoss("non_saturating"),
                partial(torch.optim.Adam, lr=1e-3), partial(torch.optim.Adam, lr=1e-3), latent_dim=4,
                augment=CountingAugment(policy=["color"], p=0.5, interval=1, speed_kimg=0.08))
    fit(model, 2, loader())
    assert model.augment.calls == [8, 8, 8] * 2  # per step: real and fake in the critic step, fake in the generator step
    assert model.augment.p != 0.5  # adjusted after every critic step by 8 / 80 images


# --- through the CLIs ------------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_quality_toolkit_composes_and_sample_uses_ema_by_default(mnist_dir, tmp_path):
    run = tmp_path / "run"
    train_in_process("model=dcgan", "loss=hinge", "model.discriminator.norm=spectral", "augment=diffaug",
                     "model.ema.decay=0.999", "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=8",
                     "data.val_size=8", "model.generator.base_width=8", "model.discriminator.base_width=8",
                     "model.latent_dim=16", "model.num_fixed_samples=4", "steps=2", "checkpoint_every=2",
                     "sample_every=2", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    ckpt = run / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint["ganx"]["generator_steps"] == 2
    assert any(k.startswith("generator_ema.module.") for k in checkpoint["state_dict"])
    model = build_model(checkpoint)
    z = draw_latent(4, 16, "normal", torch.Generator().manual_seed(3))
    # The checkpoint's EMA copy carries the live generator's BatchNorm statistics; sampling recomputes them
    expected = {"ema": model.sampling_generator().eval()(z), "trained": model.generator(z)}
    for name, ema in (("ema", None), ("trained", False)):
        out = sample(SampleConfig(ckpt=str(ckpt), n=4, out=str(tmp_path / f"{name}.npz"), seed=3, ema=ema))
        pixels = torch.from_numpy(np.load(out)["images"]).float()
        want = (((expected[name].detach() + 1) / 2).clamp(0, 1) * 255).round()
        assert torch.equal(pixels, want), name
    assert not torch.equal(expected["ema"], expected["trained"])


@pytest.mark.e2e
def test_wrong_combination_is_refused_before_training(tmp_path, mnist_dir):
    result = run_cli("model=cyclegan", "data=unpaired", "augment=diffaug", f"hydra.run.dir={tmp_path / 'run'}",
                     *FAST, cwd=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert result.returncode != 0
    assert "not supported by CycleGAN" in result.stderr
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))
