"""Loss values against hand-computed cases, and the regularisers against known functions."""

import math

import pytest
import torch
from torch import nn

from ganx.errors import ConfigError
from ganx.losses import (
    LOSSES,
    AdversarialLoss,
    FastGANLoss,
    clip_weights_,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    minimax_d_loss,
    minimax_g_loss,
    non_saturating_g_loss,
    r1_penalty,
    r2_penalty,
    random_margin_hinge_d_loss,
    reconstruction_loss,
    rpgan_d_loss,
    rpgan_g_loss,
    wasserstein_d_loss,
    wasserstein_g_loss,
)

REAL = torch.tensor([2.0, 0.0])
FAKE = torch.tensor([-1.0, 3.0])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_minimax_and_non_saturating_match_log_formulas():
    d_real, d_fake = [sigmoid(v) for v in REAL.tolist()], [sigmoid(v) for v in FAKE.tolist()]
    expected_d = -(sum(math.log(p) for p in d_real) / 2) - sum(math.log(1 - p) for p in d_fake) / 2
    assert minimax_d_loss(REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    assert minimax_g_loss(FAKE).item() == pytest.approx(sum(math.log(1 - p) for p in d_fake) / 2, rel=1e-6)
    assert non_saturating_g_loss(FAKE).item() == pytest.approx(-sum(math.log(p) for p in d_fake) / 2, rel=1e-6)


def test_sigmoid_losses_are_stable_for_extreme_logits():
    big = torch.tensor([200.0, -200.0])
    assert torch.isfinite(minimax_d_loss(big, -big)) and torch.isfinite(non_saturating_g_loss(big))
    assert minimax_d_loss(torch.tensor([200.0]), torch.tensor([-200.0])).item() == pytest.approx(0.0, abs=1e-6)


def test_wasserstein_values():
    # E[D(G(z))] - E[D(x)] = (-1 + 3)/2 - (2 + 0)/2 = 0
    assert wasserstein_d_loss(REAL, FAKE).item() == pytest.approx(0.0)
    assert wasserstein_d_loss(torch.tensor([3.0]), torch.tensor([1.0])).item() == pytest.approx(-2.0)
    assert wasserstein_g_loss(FAKE).item() == pytest.approx(-1.0)


def test_lsgan_values():
    # 1/2 mean((2-1)^2, (0-1)^2) + 1/2 mean(1, 9) = 0.5 + 2.5
    assert lsgan_d_loss(REAL, FAKE).item() == pytest.approx(3.0)
    # 1/2 mean((-2)^2, 2^2) = 2
    assert lsgan_g_loss(FAKE).item() == pytest.approx(2.0)


def test_hinge_values():
    # mean(relu(1-2), relu(1-0)) + mean(relu(1-1), relu(1+3)) = 0.5 + 2
    assert hinge_d_loss(REAL, FAKE).item() == pytest.approx(2.5)
    assert hinge_g_loss(FAKE).item() == pytest.approx(-1.0)


def test_random_margin_hinge_draws_a_margin_in_0_8_to_1_per_logit():
    # FastGAN's train_d: relu(U(0.8, 1) - D(x)) on real, relu(U(0.8, 1) + D(G(z))) on fake logits.
    torch.manual_seed(0)
    zeros = torch.zeros(10_000)
    real_only = random_margin_hinge_d_loss(zeros, torch.full((4,), -5.0)).item()  # fakes past any margin: 0
    assert real_only == pytest.approx(0.9, abs=0.01)  # the mean margin
    per_logit = [random_margin_hinge_d_loss(torch.zeros(1), torch.full((1,), -5.0)).item() for _ in range(200)]
    assert 0.8 <= min(per_logit) < 0.82 and 0.98 < max(per_logit) <= 1.0
    assert random_margin_hinge_d_loss(torch.full((3,), 1.0), torch.full((3,), -1.0)).item() == 0  # past every margin
    # the fake side mirrors the real one: fake logit 0.5 costs U(0.8, 1) + 0.5
    torch.manual_seed(1)
    assert random_margin_hinge_d_loss(torch.full((10_000,), 5.0), torch.full((10_000,), 0.5)).item() == pytest.approx(
        1.4, abs=0.01)
    assert LOSSES["random_margin_hinge"].g_loss is hinge_g_loss


def test_reconstruction_loss_sums_the_decoders_per_pixel_means():
    reconstructions = [torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)]
    targets = [torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), -1.0)]
    assert reconstruction_loss(reconstructions, targets, "l1").item() == pytest.approx(0.5 + 2.0)
    assert reconstruction_loss(reconstructions, targets, "mse").item() == pytest.approx(0.25 + 4.0)
    with pytest.raises(ValueError, match="one of"):
        reconstruction_loss(reconstructions, targets, "lpips")
    with pytest.raises(ValueError):  # one target per decoder
        reconstruction_loss(reconstructions, targets[:1])


def test_fastgan_loss_validates_its_reconstruction_keys():
    loss = FastGANLoss()
    assert (loss.name, loss.reconstruction_weight, loss.reconstruction_distance) == ("random_margin_hinge", 1.0, "l1")
    with pytest.raises(ValueError, match="reconstruction_weight must be >= 0"):
        FastGANLoss(reconstruction_weight=-1)
    with pytest.raises(ValueError, match="reconstruction_distance must be one of.*LPIPS"):
        FastGANLoss(reconstruction_distance="lpips")


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return x.flatten(1) @ self.w


@pytest.mark.parametrize("w", [[3.0, 4.0], [0.6, 0.0], [1.0, 0.0]])
def test_gradient_penalty_of_linear_critic_is_exact(w):
    # D(x) = w.x has input gradient w everywhere, so the penalty is (||w|| - 1)^2 for every interpolate.
    critic = Linear(torch.tensor(w))
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    expected = (torch.tensor(w).norm() - 1) ** 2
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(expected.item(), abs=1e-6)


def test_gradient_penalty_reaches_critic_parameters():
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: double backward through the input gradient.
    w = torch.tensor([3.0, 4.0])
    critic = Linear(w)
    gradient_penalty(critic, torch.randn(8, 2), torch.randn(8, 2)).backward()
    assert torch.allclose(critic.w.grad, 2 * (w.norm() - 1) * w / w.norm(), atol=1e-5)


def test_gradient_penalty_uses_per_sample_interpolates_on_nonlinear_critic():
    # D(x) = ||x||^2 / 2 has gradient x: the penalty depends on where each interpolate lands, so it must equal
    # E[(||eps x + (1-eps) y|| - 1)^2] with one eps per sample drawn by the same RNG stream.
    critic = lambda x: 0.5 * x.flatten(1).pow(2).sum(1)  # noqa: E731
    real, fake = torch.randn(32, 3, 2, 2), torch.randn(32, 3, 2, 2)
    torch.manual_seed(0)
    penalty = gradient_penalty(critic, real, fake)
    torch.manual_seed(0)
    eps = torch.rand(32, 1, 1, 1)
    x_hat = eps * real + (1 - eps) * fake
    assert penalty.item() == pytest.approx((x_hat.flatten(1).norm(dim=1) - 1).pow(2).mean().item(), rel=1e-5)


@pytest.mark.parametrize(("w", "center", "one_sided", "expected"), [
    ([3.0, 4.0], 0.0, False, 25.0),   # zero-centred: ||w||^2
    ([3.0, 4.0], 1.0, True, 16.0),    # one-sided, norm above 1: as two-sided
    ([0.6, 0.0], 1.0, True, 0.0),     # one-sided, norm below 1: no penalty
    ([0.6, 0.0], 1.0, False, 0.16),
])
def test_gradient_penalty_variants_of_linear_critic(w, center, one_sided, expected):
    critic = Linear(torch.tensor(w))
    penalty = gradient_penalty(critic, torch.randn(8, 2), torch.randn(8, 2), center=center, one_sided=one_sided)
    assert penalty.item() == pytest.approx(expected, abs=1e-5)


def test_gradient_penalty_in_autocast_precision_runs_the_critic_in_bf16():
    # precision="autocast" leaves the run's bf16 autocast on for the critic's pass and the double backward (its
    # speed-up), the norm and the penalty in float32; "float32" (the default) turns autocast off for all of it.
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8 * 6 * 6, 1))
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    seen = []
    hook = critic[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    values = {}
    for precision in ("float32", "autocast"):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            values[precision] = gradient_penalty(critic, real, fake, precision=precision)
        values[precision].backward()
        assert values[precision].dtype == torch.float32
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert values["autocast"].item() == pytest.approx(values["float32"].item(), rel=0.05)  # bf16: ~3 digits
    with pytest.raises(ConfigError, match="gp_precision"):
        gradient_penalty(critic, real, fake, precision="bf16")


def test_r1_penalty_of_linear_critic():
    critic = Linear(torch.tensor([3.0, 4.0]))
    real = torch.randn(5, 2).requires_grad_(True)
    assert r1_penalty(critic(real), real).item() == pytest.approx(0.5 * 25.0, rel=1e-6)


def test_clip_weights_bounds_every_parameter():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    nn.init.normal_(net[0].weight, std=5.0)
    clip_weights_(net, 0.01)
    assert all(p.abs().max() <= 0.01 for p in net.parameters())


def test_adversarial_loss_validates_names_and_weights():
    with pytest.raises(ValueError, match="Unknown loss 'wgan'.*hinge"):
        AdversarialLoss(name="wgan")
    with pytest.raises(ValueError, match="gp_weight"):
        AdversarialLoss(name="wasserstein", gp_weight=-1)
    assert set(LOSSES) == {"minimax", "non_saturating", "wasserstein", "lsgan", "hinge", "random_margin_hinge", "rpgan"}
    assert AdversarialLoss("minimax").d_output(torch.tensor([0.0])).item() == 0.5
    assert AdversarialLoss("wasserstein").d_output(torch.tensor([2.0])).item() == 2.0


# --- relativistic pairing loss, R2, lazy regularisation ---------------------------------------------------------------


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_rpgan_values_pair_the_ith_real_with_the_ith_fake():
    # pairs (2, -1) and (0, 3): D(fake) - D(real) = -3 and 3
    assert rpgan_d_loss(REAL, FAKE).item() == pytest.approx((softplus(-3.0) + softplus(3.0)) / 2, rel=1e-6)
    # a pairing, not all-vs-all: swapping the fakes changes the value (pairs (2, 3), (0, -1): differences 1 and -1)
    assert rpgan_d_loss(REAL, FAKE.flip(0)).item() == pytest.approx((softplus(1.0) + softplus(-1.0)) / 2, rel=1e-6)
    assert rpgan_g_loss(REAL, FAKE).item() == pytest.approx((softplus(3.0) + softplus(-3.0)) / 2, rel=1e-6)
    assert rpgan_g_loss(torch.tensor([1.0]), torch.tensor([1.0])).item() == pytest.approx(math.log(2), rel=1e-6)
    # only the differences matter: a shift of every logit leaves both losses unchanged
    assert rpgan_d_loss(REAL + 5, FAKE + 5).item() == pytest.approx(rpgan_d_loss(REAL, FAKE).item(), rel=1e-6)
    with pytest.raises(ValueError, match="pairs each real logit with one fake logit.*\\(2,\\).*\\(3,\\)"):
        rpgan_d_loss(REAL, torch.zeros(3))


def test_relativistic_generator_loss_needs_the_real_logits():
    loss = AdversarialLoss("rpgan")
    assert loss.g_loss(FAKE, REAL).item() == pytest.approx(rpgan_g_loss(REAL, FAKE).item())
    with pytest.raises(ValueError, match="loss=rpgan is relativistic"):
        loss.g_loss(FAKE)
    assert AdversarialLoss("hinge").g_loss(FAKE, REAL).item() == pytest.approx(hinge_g_loss(FAKE).item())


class Quadratic(nn.Module):
    """D(x) = sum(a * x^2): grad_x D = 2 a x."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = a

    def forward(self, x):
        return (self.a * x.pow(2)).flatten(1).sum(dim=1)


def test_r2_penalty_of_a_quadratic_critic_is_half_the_mean_squared_norm_of_2ax():
    torch.manual_seed(0)
    a = torch.tensor([[0.5, -2.0], [1.5, 3.0]])
    fake = torch.randn(6, 2, 2).requires_grad_(True)
    expected = 0.5 * (2 * a * fake.detach()).flatten(1).pow(2).sum(dim=1).mean()
    assert r2_penalty(Quadratic(a)(fake), fake).item() == pytest.approx(expected.item(), rel=1e-6)
    # against autograd's gradient too, and R1 is the same functional on real samples
    (grad,) = torch.autograd.grad(Quadratic(a)(fake).sum(), fake)
    assert torch.allclose(grad, 2 * a * fake.detach())
    assert r1_penalty(Quadratic(a)(fake), fake).item() == pytest.approx(expected.item(), rel=1e-6)


def test_r2_penalty_reaches_critic_parameters():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    fake = torch.tensor([[1.0, 1.0]], requires_grad=True)
    r2_penalty(Quadratic(a)(fake), fake).backward()
    # penalty = 1/2 * sum((2 a_i x_i)^2) = 2 sum(a_i^2 x_i^2): d/da_i = 4 a_i x_i^2
    assert torch.allclose(a.grad, torch.tensor([4.0, 8.0]))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_reg_every_must_be_a_whole_number_of_critic_steps(bad):
    with pytest.raises(ValueError, match=f"loss.reg_every must be a whole number >= 1.*{bad!r}"):
        AdversarialLoss("rpgan", reg_every=bad)
    with pytest.raises(ValueError, match="r2_weight"):
        AdversarialLoss("rpgan", r2_weight=-1)


@pytest.mark.parametrize("batch_size, shrink, pack, expected", [
    (64, 1, 1, 64), (64, 2, 1, 32), (64, 4, 1, 16), (7, 2, 1, 4),  # ceil(N / shrink)
    (6, 4, 2, 2), (6, 4, 3, 3), (8, 3, 4, 4),  # ... rounded up to whole packs
    (3, 8, 1, 1), (4, 8, 4, 4),  # never fewer than one pack, never more than the batch
])
def test_gp_batch_size_is_a_share_of_the_batch_in_whole_packs(batch_size, shrink, pack, expected):
    assert AdversarialLoss("wasserstein", gp_weight=10, gp_batch_shrink=shrink).gp_batch_size(batch_size, pack) == expected


@pytest.mark.parametrize("bad", [0, 1.5])
def test_gp_batch_shrink_must_be_a_whole_number(bad):
    with pytest.raises(ValueError, match=f"loss.gp_batch_shrink must be a whole number >= 1.*{bad!r}"):
        AdversarialLoss("wasserstein", gp_weight=10, gp_batch_shrink=bad)


def test_r1_penalty_of_a_packing_critic_averages_over_packs():
    # With PacGAN packing a critic input is a pack of samples: E[||grad D||^2] sums each pack's samples' gradients.
    from ganx.nets import MLPDiscriminator

    torch.manual_seed(0)
    packed = MLPDiscriminator(in_shape=(2,), hidden=(8,), dropout=0.0, pack=2)
    single = MLPDiscriminator(in_shape=(4,), hidden=(8,), dropout=0.0)
    single.load_state_dict(packed.state_dict())
    points = torch.randn(6, 2).requires_grad_(True)
    packs = points.detach().reshape(3, 4).requires_grad_(True)
    assert r1_penalty(packed(points), points).item() == pytest.approx(r1_penalty(single(packs), packs).item(), rel=1e-6)
