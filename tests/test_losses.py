"""Loss values against hand-computed cases, and the regularisers against known functions."""

import math

import pytest
import torch
from torch import nn

from ganx.losses import (
    LOSSES,
    AdversarialLoss,
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
    assert set(LOSSES) == {"minimax", "non_saturating", "wasserstein", "lsgan", "hinge"}
    assert AdversarialLoss("minimax").d_output(torch.tensor([0.0])).item() == 0.5
    assert AdversarialLoss("wasserstein").d_output(torch.tensor([2.0])).item() == 2.0
