"""Mode-collapse metrics for samples of a known Gaussian mixture (Srivastava et al. 2017; Lin et al. 2018).

A generated point is *high quality* when it lies within ``threshold`` standard deviations of its nearest mode; a
mode is *covered* when at least one high-quality point is assigned to it; the *reverse KL* is KL(q || uniform)
between the histogram q of high-quality points over modes and the uniform mixture weights (PacGAN, Sec. 5.1).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from ganx.metrics.evaluations import append_evaluation

log = logging.getLogger(__name__)


def nearest_modes(points: Tensor, modes: Tensor) -> tuple[Tensor, Tensor]:
    """(index of the nearest mode (N,), Euclidean distance to it (N,)) for points (N, 2) and modes (K, 2)."""
    distance, index = torch.cdist(points.float(), modes.float()).min(dim=1)
    return index, distance


def mode_histogram(points: Tensor, modes: Tensor, std: float, threshold: float = 3.0) -> Tensor:
    """High-quality points per mode (K,): points within ``threshold * std`` of their nearest mode, counted there."""
    index, distance = nearest_modes(points, modes)
    return torch.bincount(index[distance < threshold * std], minlength=len(modes))


def reverse_kl_to_uniform(histogram: Tensor) -> float:
    """KL(q || uniform) = sum_k q_k log(K q_k), q = histogram / its sum; 0 for an even spread, log K for one mode.

    NaN when the histogram is empty (no point near any mode): the divergence is then undefined.
    """
    total = histogram.sum()
    if total == 0:
        return math.nan
    q = histogram[histogram > 0].double() / total
    return float((q * (q * len(histogram)).log()).sum())


@dataclass(frozen=True)
class ModeStats:
    modes_covered: int  # modes with at least one high-quality point
    high_quality: float  # share of points within threshold * std of a mode, in [0, 1]
    reverse_kl: float  # KL(high-quality mode histogram || uniform); NaN without high-quality points

    def as_metrics(self, prefix: str = "val/") -> dict[str, float]:
        return {f"{prefix}{name}": float(value) for name, value in vars(self).items()}


def mode_stats(points: Tensor, modes: Tensor, std: float, threshold: float = 3.0) -> ModeStats:
    """Modes covered, high-quality share and reverse KL of generated ``points`` against the mixture's ``modes``."""
    if points.dim() != 2 or points.shape[1] != modes.shape[1]:
        raise ValueError(f"points must have shape (N, {modes.shape[1]}), got {tuple(points.shape)}")
    histogram = mode_histogram(points, modes, std, threshold)
    return ModeStats(
        modes_covered=int((histogram > 0).sum()),
        high_quality=float(histogram.sum()) / len(points),
        reverse_kl=reverse_kl_to_uniform(histogram),
    )


class ModeCoverage(L.Callback):
    """Every ``every_n_steps`` generator steps (and at the end), log ``mode_stats`` of ``num_samples`` samples as
    ``val/modes_covered``, ``val/high_quality`` and ``val/reverse_kl``, and append them to the evaluation log
    ``log_path`` (``ganx.metrics.evaluations``; None: not recorded). The samples come from the same latent codes at every evaluation (``metrics_rng``), as FID's do,
    and leave the training run's random stream alone.

    Needs a data module that describes a mixture (``modes`` and ``std`` attributes, as ``GaussianMixtureDataModule``
    does): the 2-D toy data configs add it (``conf/callbacks/mode_coverage.yaml``).
    """

    def __init__(self, every_n_steps: int, num_samples: int = 2500, threshold: float = 3.0,
                 log_path: str | Path | None = None):
        if every_n_steps < 1 or num_samples < 1:
            raise ValueError(f"every_n_steps and num_samples must be >= 1, got {every_n_steps}, {num_samples}")
        self.every_n_steps, self.num_samples, self.threshold = every_n_steps, num_samples, threshold
        self.log_path = Path(log_path) if log_path else None
        self._last_logged = -1
        self.last_stats: ModeStats | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if getattr(datamodule, "modes", None) is None:
            raise ValueError(f"Mode coverage needs Gaussian-mixture data (data=gaussian_ring or gaussian_grid), got "
                             f"{type(datamodule).__name__}; remove it with ~callbacks.mode_coverage.")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.generator_steps % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.generator_steps != self._last_logged:
            self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: L.Trainer, pl_module) -> ModeStats:
        datamodule = trainer.datamodule
        # Codes from their own generator, the same at every evaluation: drawn from the global RNG, they would shift
        # the training noise that follows, so sample_every would change the run.
        points = pl_module.generate(pl_module.sample_latent(self.num_samples, pl_module.metrics_rng(0)))
        stats = mode_stats(points.cpu(), datamodule.modes, datamodule.std, self.threshold)
        step = pl_module.generator_steps
        for logger in trainer.loggers:
            logger.log_metrics(stats.as_metrics(), step=step)
        # Also into callback_metrics (not the loggers again), where checkpoint monitors and the progress bar read
        # metrics; `self.log` is not allowed in on_train_end, so set them directly.
        trainer.callback_metrics.update({k: torch.tensor(float(v)) for k, v in stats.as_metrics().items()})
        if trainer.is_global_zero and self.log_path is not None:
            protocol = {"num_samples": self.num_samples, "threshold_std": self.threshold, "modes": len(datamodule.modes)}
            append_evaluation(self.log_path, step, stats.as_metrics(), protocol)
        log.info("step %d: %d/%d modes covered, %.1f%% high quality, reverse KL %.3f", step, stats.modes_covered,
                 len(datamodule.modes), 100 * stats.high_quality, stats.reverse_kl)
        self._last_logged, self.last_stats = step, stats
        return stats
