"""Adversarial losses and critic regularisers as small pure functions.

Discriminators return raw scores ("logits"); every loss applies its own link function, so the sigmoid-based losses use
``softplus`` (numerically stable BCE-with-logits) and the Wasserstein/hinge/least-squares losses use the raw score.
Each D loss is minimised by the discriminator, each G loss by the generator.

Interface: a D loss is ``(real_logits, fake_logits) -> loss``; a G loss is ``(fake_logits) -> loss``, except for the
relativistic losses (``LossFamily.relativistic``), whose G loss is ``(real_logits, fake_logits) -> loss`` too. A
relativistic loss pairs the i-th real logit with the i-th fake logit of the minibatch, so both must have one shape.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganx.errors import ConfigError, check_whole_number

# --- Original GAN (Goodfellow et al. 2014) ---------------------------------------------------------------------------


def minimax_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))], D = sigmoid(logits) (Goodfellow et al. 2014, Eq. 1; the D side of the game)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def minimax_g_loss(fake_logits: Tensor) -> Tensor:
    """E[log(1 - D(G(z)))] (Goodfellow et al. 2014, Eq. 1): the saturating generator loss of the minimax game."""
    return -F.softplus(fake_logits).mean()


def non_saturating_g_loss(fake_logits: Tensor) -> Tensor:
    """-E[log D(G(z))] (Goodfellow et al. 2014, Sec. 3): same fixed point, strong gradients early in training."""
    return F.softplus(-fake_logits).mean()


# --- Wasserstein GAN (Arjovsky et al. 2017) --------------------------------------------------------------------------


def wasserstein_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """E[D(G(z))] - E[D(x)]: minus the Kantorovich-Rubinstein estimate (Arjovsky et al. 2017, Eq. 3)."""
    return fake_logits.mean() - real_logits.mean()


def wasserstein_g_loss(fake_logits: Tensor) -> Tensor:
    """-E[D(G(z))] (Arjovsky et al. 2017, Algorithm 1, generator update)."""
    return -fake_logits.mean()


# --- Least squares GAN (Mao et al. 2017) -----------------------------------------------------------------------------


def lsgan_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]: Mao et al. 2017, Eq. 9 with the 0-1 coding a=0, b=1 (as CycleGAN uses)."""
    return 0.5 * (real_logits - 1).pow(2).mean() + 0.5 * fake_logits.pow(2).mean()


def lsgan_g_loss(fake_logits: Tensor) -> Tensor:
    """1/2 E[(D(G(z)) - 1)^2]: Mao et al. 2017, Eq. 9 with c = 1."""
    return 0.5 * (fake_logits - 1).pow(2).mean()


# --- Hinge loss (Lim & Ye 2017; Miyato et al. 2018) ------------------------------------------------------------------


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] (Miyato et al. 2018, Eq. 16)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """-E[D(G(z))] (Miyato et al. 2018, Eq. 17)."""
    return -fake_logits.mean()


def random_margin_hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """E[max(0, m - D(x))] + E[max(0, m' + D(G(z)))], a margin m, m' ~ U(0.8, 1) drawn for every logit.

    The hinge loss of FastGAN (Liu et al. 2021, Sec. 3.2: L_D with margin 1) as its code trains it (train.py,
    train_d: ``relu(rand * 0.2 + 0.8 - pred)`` on real, ``relu(rand * 0.2 + 0.8 + pred)`` on fake logits): logits past
    the margin cost nothing, and a margin that moves keeps D from settling exactly on it. The margins come from torch's
    global RNG, which checkpoints keep. The generator's loss is the hinge one, -E[D(G(z))].
    """
    real_margin = 0.8 + 0.2 * torch.rand_like(real_logits)
    fake_margin = 0.8 + 0.2 * torch.rand_like(fake_logits)
    return F.relu(real_margin - real_logits).mean() + F.relu(fake_margin + fake_logits).mean()


# --- Relativistic pairing GAN (Jolicoeur-Martineau 2018; Huang et al. 2024) ------------------------------------------


def rpgan_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """E[f(D(G(z_i)) - D(x_i))], f = softplus, over pairs (x_i, z_i) of the minibatch.

    The relativistic pairing GAN (RpGAN; Jolicoeur-Martineau 2018, relativistic standard GAN: -log sigmoid(t) =
    softplus(-t); Huang et al. 2024, "The GAN is dead; long live the GAN", the RpGAN objective of R3GAN): D is judged on how much more real each real sample looks than the
    fake it is paired with, rather than on each sample alone.
    """
    _check_pairs(real_logits, fake_logits)
    return F.softplus(fake_logits - real_logits).mean()


def rpgan_g_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """E[f(D(x_i) - D(G(z_i)))], f = softplus: the generator side of RpGAN (Huang et al. 2024), the D loss with the
    roles of real and fake swapped."""
    _check_pairs(real_logits, fake_logits)
    return F.softplus(real_logits - fake_logits).mean()


def _check_pairs(real_logits: Tensor, fake_logits: Tensor) -> None:
    if real_logits.shape != fake_logits.shape:
        raise ValueError(
            f"A relativistic loss pairs each real logit with one fake logit, but got shapes {tuple(real_logits.shape)} "
            f"(real) and {tuple(fake_logits.shape)} (fake); draw as many fakes as real samples."
        )


# --- Regularisers ----------------------------------------------------------------------------------------------------


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, center: float = 1.0,
                     one_sided: bool = False, precision: str = "float32") -> Tensor:
    """E[(||grad_x_hat D(x_hat)||_2 - center)^2], x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample.

    Gulrajani et al. 2017, Eq. 3 (center 1; multiply by lambda = gp_weight). ``one_sided``: max(0, ||g|| - center)^2,
    which only pushes the norm down (Petzka et al. 2018, "On the regularization of Wasserstein GANs", Eq. 8);
    ``center`` 0: the zero-centred penalty on interpolates (Thanh-Tung et al. 2019, Eq. 9). The graph is kept
    (create_graph) so the penalty's gradient reaches the critic's parameters (double backward).

    ``precision``: "float32" runs the critic's pass and the double backward in float32 with autocast off (the squared
    norm of a half-precision gradient is a known NaN source); "autocast" runs them in the training precision (bf16
    under bf16-mixed: the penalty is most of a WGAN-GP critic step, and bf16 convolutions run ~2x faster on CPUs with
    bf16 units), with the interpolation, the norm and the penalty in float32 either way.
    """
    if precision not in GP_PRECISIONS:
        raise ConfigError(f"loss.gp_precision={precision!r}: choose one of {', '.join(GP_PRECISIONS)}.")
    with torch.autocast(device_type=real.device.type, enabled=False):
        real, fake = real.detach().float(), fake.detach().float()
        eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=torch.is_autocast_enabled(real.device.type)
                        and precision == "autocast"):
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        excess = grad.float().flatten(1).norm(2, dim=1) - center
        return (excess.clamp(min=0) if one_sided else excess).pow(2).mean()


GP_PRECISIONS = ("float32", "autocast")


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """1/2 E[||grad_x D(x)||^2] on real data (Mescheder et al. 2018, Eq. 9; multiply by gamma = r1_weight).

    ``real`` must have had ``requires_grad_(True)`` before the critic produced ``real_logits``.
    """
    return _half_squared_input_gradient(real_logits, real)


def r2_penalty(fake_logits: Tensor, fake: Tensor) -> Tensor:
    """1/2 E[||grad_x D(G(z))||^2] on generated data (Mescheder et al. 2018, Eq. 10; multiply by gamma = r2_weight).

    R1 + R2 together make RpGAN converge locally (Huang et al. 2024, Sec. 2.3). ``fake`` must have had
    ``requires_grad_(True)`` before the critic produced ``fake_logits``.
    """
    return _half_squared_input_gradient(fake_logits, fake)


def _half_squared_input_gradient(logits: Tensor, inputs: Tensor) -> Tensor:
    # create_graph: the penalty's own gradient must reach the critic's parameters (double backward).
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    # The expectation is over the critic's inputs, one per row of logits: with PacGAN packing (MLPDiscriminator's
    # pack) an input is m samples, and its squared gradient norm sums over all m.
    return 0.5 * grad.pow(2).sum() / logits.shape[0]


def path_length_penalty(images: Tensor, ws: Tensor, pl_mean: Tensor, decay: float) -> tuple[Tensor, Tensor]:
    """E[(||J_w^T y||_2 - a)^2], y ~ N(0, I) / sqrt(H W), a the running mean of the lengths (StyleGAN2 Eq. 4,
    Sec. 3.2; multiply by pl_weight). Returns (penalty, the moved mean a <- a + decay (mean length - a), detached).

    ``images`` = synthesis(``ws``), ws (N, num_ws, w_dim); the length per sample is the norm of the gradient with
    respect to each w, squared and averaged over the layers, as the official code takes it.
    """
    noise = torch.randn_like(images) / (images.shape[2] * images.shape[3]) ** 0.5
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
    mean = pl_mean.lerp(lengths.mean().detach(), decay)
    return (lengths - mean).square().mean(), mean


RECONSTRUCTION_DISTANCES = ("l1", "mse")


def reconstruction_loss(reconstructions: Sequence[Tensor], targets: Sequence[Tensor], distance: str = "l1") -> Tensor:
    """The sum over decoders of E[||G(f) - T(x)||] on real images x: FastGAN's self-supervision of its discriminator
    (Liu et al. 2021, Sec. 3.2, L_recons), f the discriminator's features of x, G a decoder, T the resizing or cropping
    that makes its target. ``distance``: the per-pixel mean absolute error (l1) or squared error (mse), in float32.

    The paper (and its code) measure the distance with LPIPS, whose VGG weights ganx cannot count on having offline.
    """
    if distance not in RECONSTRUCTION_DISTANCES:
        raise ValueError(f"distance must be one of {RECONSTRUCTION_DISTANCES}, got {distance!r}.")
    errors = [reconstruction.float() - target.float()
              for reconstruction, target in zip(reconstructions, targets, strict=True)]
    return sum(error.abs().mean() if distance == "l1" else error.square().mean() for error in errors)


@torch.no_grad()
def clip_weights_(critic: nn.Module, clip_value: float) -> None:
    """Clamp every critic parameter to [-c, c] (Arjovsky et al. 2017, Algorithm 1, line 7)."""
    for p in critic.parameters():
        p.clamp_(-clip_value, clip_value)


# --- Registry: one place to add a loss --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossFamily:
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[..., Tensor]  # (fake_logits), or (real_logits, fake_logits) if relativistic
    probability_link: bool  # True: D(x) = sigmoid(logit) is a probability; False: the raw score is D(x)
    wasserstein: bool = False  # True: E[D(x)] - E[D(G(z))] estimates the Wasserstein distance
    relativistic: bool = False  # True: the G loss needs D(x) of real samples paired with the fakes


LOSSES: dict[str, LossFamily] = {
    "minimax": LossFamily(minimax_d_loss, minimax_g_loss, probability_link=True),
    "non_saturating": LossFamily(minimax_d_loss, non_saturating_g_loss, probability_link=True),
    "wasserstein": LossFamily(wasserstein_d_loss, wasserstein_g_loss, probability_link=False, wasserstein=True),
    "lsgan": LossFamily(lsgan_d_loss, lsgan_g_loss, probability_link=False),
    "hinge": LossFamily(hinge_d_loss, hinge_g_loss, probability_link=False),
    "random_margin_hinge": LossFamily(random_margin_hinge_d_loss, hinge_g_loss, probability_link=False),
    "rpgan": LossFamily(rpgan_d_loss, rpgan_g_loss, probability_link=False, relativistic=True),
}


@dataclass(frozen=True)
class AdversarialLoss:
    """A loss family plus the critic regularisers, built from the Hydra ``loss`` group.

    gp_weight: lambda of the WGAN-GP gradient penalty (0 disables it).
    clip_value: c of WGAN weight clipping (None disables it).
    r1_weight: gamma of the R1 penalty on real data (0 disables it).
    r2_weight: gamma of the R2 penalty on generated data (0 disables it).
    gp_center, gp_one_sided, gp_precision: the gradient penalty's variant and precision (``gradient_penalty``).
    gp_batch_shrink: the gradient penalty on the first 1/gp_batch_shrink of each critic batch (rounded up to a whole
        pack), an estimate of the same expectation from fewer interpolates at a fraction of the penalty's cost, as
        StyleGAN2's path length penalty does (``pl_batch_shrink``, Karras et al. 2020); 1 uses the whole batch.
    reg_every: apply the penalties (gradient penalty, R1, R2) only every this many critic steps, multiplied by it
        (lazy regularisation, Karras et al. 2020, StyleGAN2 Sec. 3.1); 1 applies them at every critic step.
    """

    name: str = "non_saturating"
    gp_weight: float = 0.0
    clip_value: float | None = None
    r1_weight: float = 0.0
    r2_weight: float = 0.0
    gp_center: float = 1.0
    gp_one_sided: bool = False
    gp_precision: str = "float32"
    gp_batch_shrink: int = 1
    reg_every: int = 1

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ConfigError(f"Unknown loss {self.name!r}; choose one of {sorted(LOSSES)} (loss=<name> on the command line).")
        if self.gp_weight < 0 or self.r1_weight < 0 or self.r2_weight < 0:
            raise ConfigError(f"loss.gp_weight, loss.r1_weight and loss.r2_weight must be >= 0, got {self.gp_weight}, "
                              f"{self.r1_weight}, {self.r2_weight}.")
        check_whole_number("loss.reg_every", self.reg_every, meaning=" (critic steps between penalties)")
        check_whole_number("loss.gp_batch_shrink", self.gp_batch_shrink, meaning=" (the batch's share the gradient "
                           "penalty uses is 1/gp_batch_shrink)")
        if self.gp_precision not in GP_PRECISIONS:
            raise ConfigError(f"loss.gp_precision={self.gp_precision!r}: choose one of {', '.join(GP_PRECISIONS)}.")
        if self.gp_center < 0:
            raise ConfigError(f"loss.gp_center must be >= 0 (1: WGAN-GP, 0: zero-centred), got {self.gp_center}.")
        if self.clip_value is not None and self.clip_value <= 0:
            raise ConfigError(f"loss.clip_value must be > 0 or null, got {self.clip_value}.")

    @property
    def family(self) -> LossFamily:
        return LOSSES[self.name]

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return self.family.d_loss(real_logits, fake_logits)

    def gp_batch_size(self, batch_size: int, pack: int = 1) -> int:
        """How many of a critic batch's samples the gradient penalty uses: ceil(batch_size / gp_batch_shrink), rounded
        up to a multiple of ``pack`` (a critic that judges ``pack`` samples per logit), at most the whole batch."""
        shrunk = -(-batch_size // self.gp_batch_shrink)
        return min(batch_size, -(-shrunk // pack) * pack)

    @property
    def penalized(self) -> bool:
        """True if a penalty on the critic's input gradient is on (gradient penalty, R1 or R2)."""
        return self.gp_weight > 0 or self.r1_weight > 0 or self.r2_weight > 0

    def g_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        """The generator's loss; ``real_logits`` (D of real samples paired with the fakes) only for a relativistic
        loss, which needs them."""
        if not self.family.relativistic:
            return self.family.g_loss(fake_logits)
        if real_logits is None:
            raise ValueError(f"loss={self.name} is relativistic: its generator loss needs D(x) of real samples paired "
                             "with the fakes, which this model does not pass; choose another loss.")
        return self.family.g_loss(real_logits, fake_logits)

    def d_output(self, logits: Tensor) -> Tensor:
        """D(x) as the paper defines it: a probability for the sigmoid losses, the raw score otherwise."""
        return torch.sigmoid(logits) if self.family.probability_link else logits


@dataclass(frozen=True)
class StyleGAN2Loss(AdversarialLoss):
    """AdversarialLoss plus StyleGAN2's path-length regularisation of the generator (Karras et al. 2020, Sec. 3.2).

    pl_weight: weight of the path-length penalty (2 in the paper; 0 disables it).
    pl_every: apply it every this many generator steps, multiplied by it (lazy regularisation, 4 in the paper).
    pl_decay: decay of the running mean of the path lengths (0.01).
    pl_batch_shrink: the penalty's own forward pass uses batch_size // pl_batch_shrink samples (2).
    """

    pl_weight: float = 2.0
    pl_every: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.pl_weight < 0:
            raise ConfigError(f"loss.pl_weight must be >= 0 (0 turns path-length regularisation off), got {self.pl_weight}.")
        check_whole_number("loss.pl_every", self.pl_every)
        check_whole_number("loss.pl_batch_shrink", self.pl_batch_shrink)
        if not 0 < self.pl_decay <= 1:
            raise ConfigError(f"loss.pl_decay must be in (0, 1] (0.01 in the paper), got {self.pl_decay}.")


@dataclass(frozen=True)
class FastGANLoss(AdversarialLoss):
    """AdversarialLoss plus FastGAN's reconstruction loss of the discriminator's decoders on real images (Liu et al.
    2021, Sec. 3.2: L_D = hinge + L_recons; ``ganx.models.FastGAN`` adds it to every critic step).

    reconstruction_weight: weight of L_recons (1 in the paper; 0 turns the self-supervision off).
    reconstruction_distance: l1 | mse per pixel (the paper: LPIPS, not available offline; see ``reconstruction_loss``).
    """

    name: str = "random_margin_hinge"
    reconstruction_weight: float = 1.0
    reconstruction_distance: str = "l1"

    def __post_init__(self):
        super().__post_init__()
        if self.reconstruction_weight < 0:
            raise ConfigError(f"loss.reconstruction_weight must be >= 0 (0 turns the decoders' self-supervision off), "
                              f"got {self.reconstruction_weight}.")
        if self.reconstruction_distance not in RECONSTRUCTION_DISTANCES:
            raise ConfigError(f"loss.reconstruction_distance must be one of {RECONSTRUCTION_DISTANCES} (LPIPS, the "
                              f"paper's, needs VGG weights ganx does not ship), got {self.reconstruction_distance!r}.")
