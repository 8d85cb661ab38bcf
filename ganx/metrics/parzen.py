"""The Gaussian Parzen-window log-likelihood estimate of Goodfellow et al. 2014 (Table 1, after Breuleux et al. 2011).

A Gaussian kernel density with bandwidth sigma is centred on each of n generated samples g_i; a test image x gets

    log p(x) = logsumexp_i( -||x - g_i||^2 / (2 sigma^2) ) - log n - (d / 2) log(2 pi sigma^2),

sigma is chosen by grid search on a validation split, and the mean of log p over the test split is reported in nats
with its standard error, on images flattened to d pixels in [0, 1] (the paper's scaling of MNIST and TFD).

It is a poor estimator in high dimensions. The paper says so ("this method of estimating the likelihood has somewhat
high variance and does not perform well in high dimensional spaces"), and Theis et al. 2016 ("A note on the
evaluation of generative models") show it can rank models opposite to their true likelihood — a k-means "model"
scores better than the true data distribution. Use it only to compare with numbers of that era.
"""

import math
from typing import Any

import torch
from torch import Tensor

from ganx.metrics.registry import EvaluationSetup, register_metric

# The sigma grid of the paper's code (parzen_ll.py: logspace from 10^-1 to 10^0, 10 values).
DEFAULT_SIGMAS = tuple(float(s) for s in torch.logspace(-1, 0, 10, dtype=torch.float64))


def to_parzen_space(images: Tensor) -> Tensor:
    """Images in [-1, 1] (N, C, H, W) -> flattened float64 rows in [0, 1] (the paper's pixel scaling)."""
    return ((images.double().flatten(1) + 1) / 2).clamp(0, 1)


def parzen_log_likelihood(samples: Tensor, points: Tensor, sigmas: tuple[float, ...] | list[float],
                          chunk_size: int = 512) -> Tensor:
    """log p(x) of every point under the Parzen window on ``samples``, for each sigma: (len(sigmas), len(points)).

    Squared distances come from ||x||^2 + ||g||^2 - 2 x.g in float64: in float32 the cancellation error (~1e-5)
    divided by 2 sigma^2 would shift small-sigma estimates by whole nats. Points are processed in chunks, so memory
    is chunk_size x n, and all sigmas reuse one distance matrix per chunk.
    """
    samples, points = samples.double(), points.double()
    n, d = samples.shape
    sample_norms = (samples * samples).sum(1)
    normaliser = torch.tensor([math.log(n) + 0.5 * d * math.log(2 * math.pi * s * s) for s in sigmas],
                              dtype=torch.float64).view(-1, 1)
    out = []
    for chunk in points.split(chunk_size):
        sq = ((chunk * chunk).sum(1, keepdim=True) + sample_norms - 2 * chunk @ samples.T).clamp_min_(0)
        out.append(torch.stack([torch.logsumexp(-sq / (2 * s * s), dim=1) for s in sigmas]) - normaliser)
    return torch.cat(out, dim=1)


def parzen_estimate(samples: Tensor, val_points: Tensor, test_points: Tensor,
                    sigmas: tuple[float, ...] | list[float] = DEFAULT_SIGMAS) -> dict:
    """Pick sigma maximising the mean validation log-likelihood, then report the test mean and its standard error.

    All inputs are flattened rows already in the evaluation scale (see ``to_parzen_space``). Returns plain numbers:
    ``log_likelihood`` (nats), ``standard_error``, ``sigma``, and the grid search (``sigma_grid``, ``val_log_likelihood``).
    """
    if len(val_points) < 1 or len(test_points) < 2:
        raise ValueError(f"Parzen needs validation and test points; got {len(val_points)} and {len(test_points)}")
    val_ll = parzen_log_likelihood(samples, val_points, sigmas).mean(dim=1)
    best = int(val_ll.argmax())
    test_ll = parzen_log_likelihood(samples, test_points, [sigmas[best]])[0]
    return {
        "log_likelihood": float(test_ll.mean()),
        "standard_error": float(test_ll.std() / math.sqrt(len(test_ll))),
        "sigma": float(sigmas[best]),
        "sigma_at_grid_edge": best in (0, len(sigmas) - 1),
        "sigma_grid": [float(s) for s in sigmas],
        "val_log_likelihood": [float(v) for v in val_ll],
        "num_samples": len(samples),
        "num_val": len(val_points),
        "num_test": len(test_points),
        "dimensions": int(samples.shape[1]),
        "units": "nats",
    }


@register_metric("parzen")
class ParzenMetric:
    """``parzen_estimate`` in ``ganx.evaluate`` (record entry ``parzen``): sigma is chosen on the first
    ``parzen_val_size`` held-out images, the log-likelihood is reported on the others."""

    def __init__(self, names: list[str], setup: EvaluationSetup):
        val_size, num_samples = setup.cfg.parzen_val_size, setup.cfg.num_samples
        if not 0 < val_size <= num_samples - 2:
            raise ValueError(f"parzen_val_size={val_size} must leave test points among num_samples={num_samples}")
        self.val_size = val_size
        self.reals: list[Tensor] = []
        self.fakes: list[Tensor] = []

    def update(self, real: Tensor, fake: Tensor, batch) -> None:
        self.reals.append(to_parzen_space(real.cpu()))
        self.fakes.append(to_parzen_space(fake.cpu()))

    def compute(self) -> dict[str, Any]:
        real = torch.cat(self.reals)
        return {"parzen": parzen_estimate(torch.cat(self.fakes), real[: self.val_size], real[self.val_size :])}
