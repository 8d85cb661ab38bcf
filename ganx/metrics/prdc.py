"""Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020) on feature vectors.

All four estimate the real and generated manifolds by k-nearest-neighbour balls: ``NND_k(x)`` is the distance from
``x`` to its k-th nearest neighbour in its own set (itself excluded), and ``B(x, r)`` the closed ball of radius ``r``.
With real features X_1..X_N and generated Y_1..Y_M:

* precision (K. eq. 1-2) = 1/M sum_j 1[Y_j in manifold(X)], manifold(X) = union_i B(X_i, NND_k(X_i)):
  how many generated samples look real (fidelity);
* recall = 1/N sum_i 1[X_i in manifold(Y)]: how much of the real distribution the generator covers (diversity);
* density (N. eq. 5) = 1/(kM) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]: like precision, but counts how many real
  balls hold each sample, so a few real outliers with large balls do not make bad samples look real; about 1 when
  both sets come from one distribution, above 1 when samples crowd dense real regions;
* coverage (N. eq. 6) = 1/N sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]: like recall, but with balls around the
  real samples only, so generated outliers cannot inflate it.

Precision and recall are torch-fidelity's implementation (``calculate_precision_recall_part``, closed balls, its
default k=3 as in the paper); density and coverage follow the authors' code (github.com/clovaai/generative-evaluation-
prdc: open balls, ``<``), k=3 as for precision and recall (Naeem et al. recommend k=5 on 10k Inception features; k is
recorded in the protocol). Distances are computed in blocks of ``batch_size`` rows, so memory stays
O(batch_size x N) instead of N x N.
"""

import torch
from torch import Tensor
from torch_fidelity.metric_prc import calculate_precision_recall_part

PRDC_NAMES = {"pr": ("precision", "recall"), "dc": ("density", "coverage")}


def knn_radii(features: Tensor, k: int, batch_size: int = 4096) -> Tensor:
    """NND_k of every row: the distance to its k-th nearest other row (the row itself is its 0-th neighbour)."""
    return torch.cat([torch.cdist(block, features).kthvalue(k + 1, dim=1).values for block in features.split(batch_size)])


def density_coverage(real: Tensor, fake: Tensor, k: int = 3, batch_size: int = 4096) -> dict[str, float]:
    """Density and coverage of ``fake`` with respect to ``real`` (rows are feature vectors; Naeem et al. 2020, eq. 5-6)."""
    radii = knn_radii(real, k, batch_size)
    balls_holding = torch.zeros(len(fake), dtype=torch.float64)
    nearest_fake = torch.full((len(real),), float("inf"), dtype=real.dtype)
    for start, block in zip(range(0, len(fake), batch_size), fake.split(batch_size), strict=True):
        distances = torch.cdist(real, block)  # (N, block)
        balls_holding[start : start + len(block)] = (distances < radii[:, None]).sum(0).double()
        nearest_fake = torch.minimum(nearest_fake, distances.min(1).values)
    return {"density": float(balls_holding.sum() / (k * len(fake))),
            "coverage": float((nearest_fake < radii).double().mean())}


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, batch_size: int = 4096) -> dict[str, float]:
    """Improved precision and recall of ``fake`` with respect to ``real`` (Kynkäänniemi et al. 2019), by torch-fidelity."""
    precision, recall = calculate_precision_recall_part(fake, real, neighborhood=k, batch_size=batch_size)
    return {"precision": float(precision), "recall": float(recall)}


def prdc(real: Tensor, fake: Tensor, names: tuple[str, ...], k: int = 3) -> dict[str, float]:
    """The requested groups ("pr": precision and recall, "dc": density and coverage), in float32 on ``real``'s device."""
    real, fake = real.float(), fake.float().to(real.device)
    values: dict[str, float] = {}
    if "pr" in names:
        values.update(precision_recall(real, fake, k))
    if "dc" in names:
        values.update(density_coverage(real, fake, k))
    return values
