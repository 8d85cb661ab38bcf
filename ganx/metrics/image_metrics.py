"""FID, IS and KID with torchmetrics on features from one extractor: the single metrics code path of ganx.

Training (``ganx.metrics.callback``) and ``ganx.evaluate`` both feed ``ImageMetrics.update(real, fake)`` with
batches of images in [-1, 1] and call ``compute()``. The extractor runs once per batch; the torchmetrics classes get
the precomputed features and a ``ColumnSlice`` as their ``feature`` module, so their update, DDP synchronisation and
compute are torchmetrics' own.

Under DDP every rank updates with its share of the images; ``compute()`` must run on every rank (torchmetrics
all-gathers there: calling it on rank 0 only hangs) and gives every rank the value of the pooled samples.
"""

import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchmetrics.aggregation import SumMetric
from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from ganx.metrics.features import FeatureExtractor, MetricsSetupError

METRIC_NAMES = ("fid", "is", "kid")
T = TypeVar("T")


class ColumnSlice(nn.Module):
    """Gives a torchmetrics metric its columns of precomputed features (torchmetrics calls ``feature(x)`` on what
    ``update`` receives; ``num_features`` spares FID its dummy forward at 299x299)."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop, self.num_features = start, stop, stop - start

    def forward(self, features: Tensor) -> Tensor:
        return features[:, self.start : self.stop]


def gather_cpu_state(tensor: Tensor, group: Any = None) -> list[Tensor]:
    """torchmetrics' all-gather for states kept on the CPU: NCCL only moves CUDA tensors, so it goes through the GPU."""
    if dist.get_backend(group) == "nccl":
        return [t.cpu() for t in gather_all_tensors(tensor.cuda(), group)]
    return gather_all_tensors(tensor, group)


def canonical_order(features: Tensor) -> Tensor:
    """The rows sorted by a fixed projection, so that IS splits and KID subsets depend on the set of images and not
    on the order in which batches and ranks delivered them: a 2-process run then equals a 1-process run."""
    weights = torch.linspace(1.0, 2.0, features.shape[1], dtype=torch.float64, device=features.device)
    return features[torch.argsort(features.double() @ weights, stable=True)]


class SetInceptionScore(InceptionScore):
    """torchmetrics' IS, with the (synced) features put in ``canonical_order`` before the random splits."""

    def compute(self) -> tuple[Tensor, Tensor]:
        self.features = [canonical_order(dim_zero_cat(self.features))]
        return super().compute()


class SetKernelInceptionDistance(KernelInceptionDistance):
    """torchmetrics' KID, with the (synced) features put in ``canonical_order`` before the random subsets."""

    def compute(self) -> tuple[Tensor, Tensor]:
        self.real_features = [canonical_order(dim_zero_cat(self.real_features))]
        self.fake_features = [canonical_order(dim_zero_cat(self.fake_features))]
        return super().compute()


def seeded(compute: Callable[[], T]) -> T:
    """Run ``compute`` with a forked, fixed-seed CPU RNG. IS splits and KID subsets are drawn with torch.randperm: this
    makes them the same on every rank, at every evaluation and whichever other metrics run, and leaves the training
    run's random stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return compute()


def require_fid_sample_size(num_images: int, extractor: FeatureExtractor, held_out: str, fixes: str) -> None:
    """Refuse FID on fewer images than feature dimensions.

    FID compares the feature covariances of the real and generated sets; those of N images have rank at most N - 1,
    so below the feature dimension they are singular, and FID is biased upwards by an amount that depends on N
    (Chong & Forsyth 2020; pytorch-fid asks for at least 2,048 images for Inception's 2,048-d features).
    """
    if num_images < extractor.pool_dim:
        raise MetricsSetupError(
            f"FID on {extractor.pool_dim}-dimensional features ({extractor.name}) needs at least {extractor.pool_dim} "
            f"real and as many generated images, but {held_out}: the feature covariance of fewer images is singular, "
            f"so FID would be biased upwards by an amount that depends on the number of images. {fixes}"
        )


class ImageMetrics(nn.Module):
    """FID (Heusel et al. 2017), IS (Salimans et al. 2016) and KID (Binkowski et al. 2018) between real and generated
    images, on the features of ``extractor``.

    Real features are computed during the first evaluation and kept (``reset_real_features=False``); ``reset()``
    clears only the generated side. Memory stays bounded for FID (running sums and a d x d matrix); IS and KID must
    keep every feature vector, and keep them on the CPU (``compute_on_cpu``).

    Args:
        extractor: the feature network (see ``ganx.metrics.features``).
        names: which of "fid", "is", "kid" to compute.
        is_splits: IS is averaged over this many disjoint splits of the generated set (Salimans et al. used 10).
        kid_subsets, kid_subset_size: KID is the mean MMD^2 over ``kid_subsets`` random subsets of this size each
            (capped at the number of images).
    """

    def __init__(self, extractor: FeatureExtractor, names: Iterable[str] = METRIC_NAMES, is_splits: int = 10,
                 kid_subsets: int = 100, kid_subset_size: int = 1000):
        super().__init__()
        names = tuple(names)
        unknown = sorted(set(names) - set(METRIC_NAMES))
        if unknown or not names:
            raise ValueError(f"metrics must be a non-empty list of {', '.join(METRIC_NAMES)}; got {list(names)}")
        self.names, self.kid_subset_size = names, kid_subset_size
        self.extractor = extractor
        pool = ColumnSlice(0, extractor.pool_dim)
        logits = ColumnSlice(extractor.pool_dim, extractor.pool_dim + extractor.num_logits)
        on_cpu = {"compute_on_cpu": True, "dist_sync_fn": gather_cpu_state}
        # IS/KID warn that they keep every feature vector: known, and the reason they keep them on the CPU.
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
        self.fid = FrechetInceptionDistance(feature=pool, reset_real_features=False) if "fid" in names else None
        self.inception_score = SetInceptionScore(feature=logits, splits=is_splits, **on_cpu) if "is" in names else None
        self.kid = (
            SetKernelInceptionDistance(feature=pool, subsets=kid_subsets, subset_size=kid_subset_size,
                                    reset_real_features=False, **on_cpu)
            if "kid" in names else None
        )
        self.num_real, self.num_fake = SumMetric(), SumMetric()
        # Real statistics are complete after the first compute(); later evaluations only add generated images.
        self.real_complete = False

    @property
    def needs_real(self) -> bool:
        return not self.real_complete and (self.fid is not None or self.kid is not None)

    @torch.no_grad()
    def update(self, real: Tensor | None, fake: Tensor) -> None:
        """Add a batch of generated images (and, until the real statistics are complete, real ones) in [-1, 1]."""
        if self.needs_real and real is not None:
            features = self.extractor(real)
            for metric in (self.fid, self.kid):
                if metric is not None:
                    metric.update(features, real=True)
            self.num_real.update(float(len(real)))
        features = self.extractor(fake)
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.update(features, real=False)
        if self.inception_score is not None:
            self.inception_score.update(features)
        self.num_fake.update(float(len(fake)))

    def compute(self) -> dict[str, float]:
        """The metrics over all ranks' images, with the counts they are based on. Call on every rank."""
        num_real, num_fake = int(self.num_real.compute()), int(self.num_fake.compute())
        values: dict[str, float] = {}
        if self.fid is not None:
            values["fid"] = float(self.fid.compute())
        if self.inception_score is not None:
            mean, std = seeded(self.inception_score.compute)
            values["is"], values["is_std"] = float(mean), float(std)
        if self.kid is not None:
            self.kid.subset_size = min(self.kid_subset_size, num_real, num_fake)
            mean, std = seeded(self.kid.compute)
            values["kid"], values["kid_std"] = float(mean), float(std)
        self.real_complete = True
        return {**values, "num_real": num_real, "num_fake": num_fake}

    def reset(self) -> None:
        """Forget the generated images; real statistics stay (FID/KID ``reset_real_features=False``)."""
        for metric in (self.fid, self.inception_score, self.kid, self.num_fake):
            if metric is not None:
                metric.reset()

    def reset_all(self) -> None:
        """Forget real statistics too (e.g. a new run, or a process that inherited states)."""
        self.reset()
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.reset_real_features = True
                metric.reset()
                metric.reset_real_features = False
        self.num_real.reset()
        self.real_complete = False

    def protocol(self) -> dict[str, Any]:
        """What a number means: extractor (with the weights' hash), metric settings. Stored with every value."""
        protocol: dict[str, Any] = {"features": self.extractor.name, "features_info": self.extractor.info,
                                    "metrics": list(self.names)}
        if self.inception_score is not None:
            protocol["is_splits"] = self.inception_score.splits
        if self.kid is not None:
            protocol.update(kid_subsets=self.kid.subsets, kid_subset_size_max=self.kid_subset_size)
        return protocol
