"""The latent prior p(z) of the GANs, shared by the models (training, metrics) and ``ganx.sample``."""

import torch
from torch import Tensor

from ganx.errors import ConfigError

LATENT_DISTRIBUTIONS = ("normal", "uniform")


def draw_latent(n: int, dim: int, distribution: str, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> Tensor:
    """n codes from the latent prior: standard normal, or uniform in [-1, 1] (Goodfellow et al. 2014's noise)."""
    if distribution == "normal":
        return torch.randn(n, dim, generator=generator, device=device)
    if distribution == "uniform":
        return torch.rand(n, dim, generator=generator, device=device) * 2 - 1
    raise ConfigError(f"model.latent_distribution must be one of {LATENT_DISTRIBUTIONS}, got {distribution!r}.")


def generator_inputs(n: int, dim: int, distribution: str, num_classes: int | None,
                     generator: torch.Generator | None = None, device: torch.device | str | None = None) -> tuple[Tensor, ...]:
    """What a generator takes for n samples: (z,), or (z, classes 0, 1, ... in turn) for a class-conditional one."""
    z = draw_latent(n, dim, distribution, generator, device)
    return (z,) if not num_classes else (z, torch.arange(n, device=device) % num_classes)
