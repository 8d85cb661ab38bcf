"""Small pieces the models share: eval-mode switching, image grids, refusing critic regularisers, the EMA generator.

The latent prior is ``ganx.latent`` (the sampling CLI draws from it without importing Lightning)."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.utils import make_grid

from ganx.errors import ConfigError
from ganx.losses import AdversarialLoss


@contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Eval mode inside the block (BatchNorm running statistics, no dropout), the previous mode afterwards."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def image_grid(images: Tensor, nrow: int) -> Tensor:
    """Images in [-1, 1] (N, C, H, W) -> one (3, H', W') grid in [0, 1], ``nrow`` images per row, 2 px padding."""
    return make_grid((images.float() + 1) / 2, nrow=nrow, padding=2).clamp(0, 1)


def refuse_critic_regularizers(model: str, loss: AdversarialLoss, fix: str) -> None:
    """Raise if ``loss`` needs what only the GAN algorithm does: critic regularisers (gradient penalty, R1, R2,
    weight clipping) or a relativistic loss (its generator update pairs fakes with real samples)."""
    if loss.penalized or loss.clip_value is not None:
        raise ConfigError(
            f"{model} does not apply critic regularisers, but the loss sets gp_weight={loss.gp_weight}, "
            f"r1_weight={loss.r1_weight}, r2_weight={loss.r2_weight}, clip_value={loss.clip_value}; {fix}."
        )
    if loss.family.relativistic:
        raise ConfigError(f"{model} does not pair real and fake samples in its generator update, which the "
                          f"relativistic loss={loss.name} needs; {fix}.")


def ema_decay(images_seen: int, batch_images: int, decay: float | None = None, kimg: float | None = None,
              rampup: float | None = None) -> float:
    """The EMA decay beta of one generator update: ``decay`` as given, or StyleGAN2-ADA's half-life of ``kimg``
    thousand images, beta = 0.5 ** (batch_images / half_life), with the half-life capped at ``rampup`` times the
    images seen before this update (its ema_rampup: early weights are forgotten quickly)."""
    if decay is not None:
        return decay
    half_life = kimg * 1000
    if rampup is not None:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch_images / max(half_life, 1e-8))


class AveragedGenerator(AveragedModel):
    """An exponential moving average of a generator's weights (Karras et al. 2018, Sec. A.1; Yazici et al. 2019):
    theta_ema <- beta * theta_ema + (1 - beta) * theta after every generator update, starting from the generator's
    initial weights; BatchNorm's running statistics are copied, not averaged (``use_buffers=False``). The averaged
    network is ``.module``; it gets no gradients and no optimizer."""

    def __init__(self, generator: nn.Module, decay: float | None = None, kimg: float | None = None,
                 rampup: float | None = None):
        if (decay is None) == (kimg is None):
            raise ConfigError(f"model.ema: set decay (e.g. 0.999) or kimg (a half-life in thousands of images, e.g. "
                              f"10), not both or neither; got decay={decay}, kimg={kimg}.")
        if decay is not None and not 0 <= decay < 1:
            raise ConfigError(f"model.ema.decay must be in [0, 1) (e.g. 0.999), got {decay}.")
        if kimg is not None and kimg <= 0:
            raise ConfigError(f"model.ema.kimg must be > 0 thousand images (e.g. 10), got {kimg}.")
        if rampup is not None and (kimg is None or rampup <= 0):
            raise ConfigError(f"model.ema.rampup={rampup} caps the kimg half-life: it needs model.ema.kimg and must be "
                              "> 0 (0.05 in StyleGAN2-ADA).")
        super().__init__(generator, use_buffers=False)
        self.requires_grad_(False)
        self.decay, self.kimg, self.rampup = decay, kimg, rampup
        # True: every update also copies the generator's buffers (StyleGAN2's tracked mean w, as its G_ema does).
        self.copy_buffers = False
        self.update_parameters(generator)  # the first update copies: theta_ema starts at the initial weights
        # False after each update: the copied BatchNorm statistics belong to the live weights (standing_statistics).
        self.statistics_match = False

    def update(self, generator: nn.Module, images_seen: int, batch_images: int) -> None:
        """Average in the generator's weights after an update on ``batch_images`` images (all ranks), the
        ``images_seen`` before it."""
        beta = ema_decay(images_seen, batch_images, self.decay, self.kimg, self.rampup)
        self.multi_avg_fn = get_ema_multi_avg_fn(beta)
        self.update_parameters(generator)
        self.statistics_match = False
        if self.copy_buffers:
            for averaged, live in zip(self.module.buffers(), generator.buffers(), strict=True):
                averaged.copy_(live)


def averaged_generator(generator: nn.Module, ema: Mapping[str, Any] | None) -> AveragedGenerator | None:
    """The EMA copy ``model.ema`` asks for (decay / kimg / rampup), or None when both are unset (the default)."""
    options = {k: v for k, v in (ema or {}).items() if v is not None}
    return AveragedGenerator(generator, **options) if options else None
