"""The latent prior p(z) of the GANs, shared by the models (training, metrics) and ``ganx.sample``."""

import torch
from torch import Tensor

LATENT_DISTRIBUTIONS = ("normal", "uniform")


def draw_latent(n: int, dim: int, distribution: str, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> Tensor:
    """n codes from the latent prior: standard normal, or uniform in [-1, 1] (Goodfellow et al. 2014's noise)."""
    if distribution == "normal":
        return torch.randn(n, dim, generator=generator, device=device)
    if distribution == "uniform":
        return torch.rand(n, dim, generator=generator, device=device) * 2 - 1
    raise ValueError(f"model.latent_distribution must be one of {LATENT_DISTRIBUTIONS}, got {distribution!r}.")
