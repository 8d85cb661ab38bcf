"""DiffAugment and ADA (ganx.augment) checked against hand computations, and in a GAN's training step."""

from functools import partial

import pytest
import torch
from helpers import fit, loader, tiny_gan

from ganx.augment import AdaptiveDiffAugment, DiffAugment, brightness, contrast, cutout, saturation, translation
from ganx.losses import AdversarialLoss
from ganx.models import GAN
from ganx.nets import MLPDiscriminator, MLPGenerator


class CountingAugment(AdaptiveDiffAugment):
    """Records the batch size of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def __call__(self, images):
        self.calls.append(len(images))
        return super().__call__(images)


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
