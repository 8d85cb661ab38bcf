"""2-D Gaussian mixtures for the mode-collapse benchmark (``data=gaussian_ring``, ``data=gaussian_grid``).

The ring of 8 and the 5x5 grid of isotropic Gaussians are the synthetic sets of the Unrolled GAN (Metz et al. 2017),
VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018) papers: every mode has the same weight, so a generator
that drops modes is easy to see and to count (``ganx.metrics.modes``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from .base import BatchKind, DataError, ImageDataModule, _check_int

log = logging.getLogger(__name__)

LAYOUTS = ("ring", "grid")


def mixture_modes(layout: str, num_modes: int, scale: float) -> torch.Tensor:
    """Mode centres (num_modes, 2): ``ring`` puts them on a circle of radius ``scale`` (the first at angle 0);
    ``grid`` on a centred sqrt(num_modes) x sqrt(num_modes) grid with spacing ``scale``."""
    if layout == "ring":
        angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
        return (scale * torch.stack([angles.cos(), angles.sin()], dim=1)).float()
    side = math.isqrt(num_modes)
    if side * side != num_modes:
        raise DataError(f"data.num_modes={num_modes} is not a square; a grid needs e.g. 25 (5x5) or 16 (4x4)")
    axis = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * scale
    return torch.cartesian_prod(axis, axis)


def sample_mixture(modes: torch.Tensor, std: float, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points from the equal-weight mixture of N(mode, std^2 I), and the index of the mode each came from."""
    index = torch.randint(len(modes), (n,), generator=generator)
    return modes[index] + std * torch.randn(n, 2, generator=generator), index


class GaussianMixtureDataModule(ImageDataModule):
    """Batches ``(points (N, 2) float32, mode index (N,) int64)`` from a fixed, seeded sample of the mixture.

    Points are not images: ``channels`` is 2 (the coordinates) and ``image_size`` 1, so code that reads those
    attributes sees a 2-D point rather than a picture. The mixture itself is public (``modes``, ``std``) for the
    mode-coverage metrics and the scatter plots.

    Args:
        layout: "ring" (modes on a circle) or "grid" (a square grid of modes).
        num_modes: number of Gaussians (a square number for "grid").
        scale: ring radius, or grid spacing.
        std: standard deviation of every Gaussian.
        train_size: points in the training set (drawn once, from ``seed``).
        val_size: held-out points used by metrics (``real_dataloader``).
        Other args: see ``ImageDataModule``.
    """

    channels = 2
    batch_kind = BatchKind.POINTS

    def __init__(
        self,
        layout: str = "ring",
        num_modes: int = 8,
        scale: float = 2.0,
        std: float = 0.02,
        train_size: int = 100_000,
        val_size: int = 2500,
        batch_size: int = 256,
        **options,
    ) -> None:
        super().__init__(batch_size=batch_size, val_size=val_size, image_size=1, **options)
        if layout not in LAYOUTS:
            raise DataError(f"data.layout must be one of {LAYOUTS}, got {layout!r}")
        if not scale > 0 or not std > 0:
            raise DataError(f"data.scale and data.std must be > 0, got scale={scale}, std={std}")
        self.layout, self.std = layout, float(std)
        self.train_size = _check_int("train_size", train_size, 1)
        self.modes = mixture_modes(layout, _check_int("num_modes", num_modes, 1), float(scale))
        self.num_classes = len(self.modes)

    def _build_sets(self) -> tuple[Dataset, Dataset]:
        generator = torch.Generator().manual_seed(self.seed)
        points, index = sample_mixture(self.modes, self.std, self.train_size + self.val_size, generator)
        train, val = slice(self.val_size, None), slice(None, self.val_size)
        log.info("%s of %d Gaussians (std %g): %d train / %d val points", self.layout, len(self.modes), self.std,
                 self.train_size, self.val_size)
        return TensorDataset(points[train], index[train]), TensorDataset(points[val], index[val])

    def summary(self) -> dict[str, Any]:
        return {"source": f"gaussian_{self.layout}", **super().summary(), "num_modes": len(self.modes), "std": self.std}
