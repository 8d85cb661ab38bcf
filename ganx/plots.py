"""Figures rendered to image tensors, so sample callbacks can save and log them like sample grids."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def scatter_points(fake: Tensor, real: Tensor | None = None, size_px: int = 480) -> Tensor:
    """A scatter plot of generated 2-D points (and real ones, if given) as an RGB image (3, H, W) in [0, 1].

    The axes are fitted to the real points when given, so plots of one run over time share their axes and a
    generator that drifts away shows as points leaving the frame.
    """
    # Imported here: matplotlib costs ~0.5 s and only 2-D runs plot. The Agg canvas renders to a buffer, headless,
    # without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fake = fake.detach().float().cpu().numpy()
    reference = fake if real is None else real.detach().float().cpu().numpy()
    lo, hi = reference.min(axis=0), reference.max(axis=0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-3) * 1.25

    dpi = 96
    fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if real is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=4, c="tab:blue", alpha=0.5, label="real", linewidths=0)
    ax.scatter(fake[:, 0], fake[:, 1], s=4, c="tab:orange", alpha=0.5, label="generated", linewidths=0)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=3, fontsize=8)
    fig.tight_layout()
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).float() / 255
