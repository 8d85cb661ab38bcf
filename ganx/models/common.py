"""Small pieces the models share: eval-mode switching, image grids, refusing critic regularisers.

The latent prior is ``ganx.latent`` (the sampling CLI draws from it without importing Lightning)."""

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn
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
