"""FID, IS and KID with torchmetrics, precision/recall and density/coverage (``ganx.metrics.prdc``), on features from
one extractor: the single metrics code path of ganx.

Training (``ganx.metrics.callback``) and ``ganx.evaluate`` both feed ``ImageMetrics.update(real, fake)`` with
batches of images in [-1, 1] and call ``compute()``. The extractor runs once per batch; the torchmetrics classes get
the precomputed features and a ``ColumnSlice`` as their ``feature`` module, so their update, DDP synchronisation and
compute are torchmetrics' own.

The real side is a *reference*: the real split's pooled features, gathered from all ranks at the first compute (or
loaded from the on-disk cache, ``ganx.metrics.reference``, so no real image reaches the extractor), put in
``canonical_order`` and fed to FID and KID as each rank's share; later evaluations extract only generated images.

Under DDP every rank updates with its share of the images; ``compute()`` must run on every rank (torchmetrics
all-gathers there: calling it on rank 0 only hangs) and gives every rank the value of the pooled samples.
"""

import logging
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.aggregation import SumMetric
from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from ganx.metrics.conditional import class_metrics_for
from ganx.metrics.extractors import pretrained_networks_in
from ganx.metrics.extractors.base import ColumnSlice, FeatureExtractor, MetricsSetupError
from ganx.metrics.prdc import PRDC_NAMES, prdc
from ganx.metrics.reference import held_out_reference, load_reference, save_reference
from ganx.metrics.registry import EvaluationSetup, register_metric
from ganx.metrics.resize import check_resize, resized_features

METRIC_NAMES = ("fid", "is", "kid", "pr", "dc")
# The values each metric name logs, and which of them carry the protocol in a second, named key (see protocol_key).
HEADLINE_VALUES = ("fid", "is", "kid", "precision", "recall", "density", "coverage")
T = TypeVar("T")

log = logging.getLogger(__name__)


def count_tag(count: int) -> str:
    """50000 -> "50k", 2000 -> "2k", 1500 -> "1500": StyleGAN2-ADA's fid50k spelling."""
    return f"{count // 1000}k" if count >= 1000 and count % 1000 == 0 else str(count)


def protocol_key(value: str, num_fake: int, split: str, features: str, resize: str = "legacy") -> str:
    """The protocol-named key of a headline value, as StyleGAN2-ADA's ``fid50k_full``: ``fid2k_val_classifier`` is
    FID of 2,000 generated images against the val split on classifier features (``_clean``: clean resize). Numbers
    under different keys are not comparable; ``val/fid`` etc. stay logged too, as the aliases ``metrics.best_by``,
    the best checkpoint and sweeps use by default."""
    extractor = features.split(":")[0].removesuffix("-v3-compat")
    return f"{value}{count_tag(num_fake)}_{split}_{extractor}" + ("_clean" if resize == "clean" else "")


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


class FeatureSet(Metric):
    """Every feature row seen, kept on the CPU and concatenated over ranks at compute (the reference's source)."""

    full_state_update = False

    def __init__(self):
        super().__init__(compute_on_cpu=True, dist_sync_fn=gather_cpu_state)
        self.add_state("rows", default=[], dist_reduce_fx="cat")

    def update(self, rows: Tensor) -> None:
        self.rows.append(rows)

    def compute(self) -> Tensor:
        return dim_zero_cat(self.rows)


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


def metric_names_for(extractor: FeatureExtractor, names: list[str], features: str) -> list[str]:
    """IS needs class logits: on extractors without them it is dropped under ``features=auto`` (logged) and refused
    when the features were chosen explicitly."""
    if extractor.num_logits or "is" not in names:
        return names
    kept = [name for name in names if name != "is"]
    if features != "auto":
        raise MetricsSetupError(
            f"IS needs class logits, which {extractor.name} does not have (features={features}). Leave IS out: "
            f"metrics.names={kept or ['fid', 'kid']} (or use features=inception / classifier).")
    log.info("metrics: IS dropped (%s has no class logits); computing %s", extractor.name, "/".join(kept))
    return kept


class ImageMetrics(nn.Module):
    """FID (Heusel et al. 2017), IS (Salimans et al. 2016), KID (Binkowski et al. 2018), precision and recall
    (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020) between real and generated images, on
    the features of ``extractor`` (IS on its logits, the others on its pooled features).

    The real side is the reference (see the module docstring): complete after the first ``compute()`` or a
    ``use_reference_cache`` hit; ``reset()`` clears only the generated side. Memory stays bounded for FID (running
    sums and a d x d matrix); the reference and the generated features of IS, KID and PR/DC are kept on the CPU.

    Args:
        extractor: the feature network (see ``ganx.metrics.extractors``).
        names: which of "fid", "is", "kid", "pr" (precision, recall), "dc" (density, coverage) to compute.
        is_splits: IS is averaged over this many disjoint splits of the generated set (Salimans et al. used 10).
        kid_subsets, kid_subset_size: KID is the mean MMD^2 over ``kid_subsets`` random subsets of this size each
            (capped at the number of images).
        resize: "legacy" (the extractor's own resize) or "clean" (PIL bicubic first; ``ganx.metrics.resize``).
        nearest_k: the k of the k-NN balls of precision/recall/density/coverage (3, as Kynkäänniemi et al.).
    """

    def __init__(self, extractor: FeatureExtractor, names: Iterable[str] = ("fid", "is", "kid"), is_splits: int = 10,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, resize: str = "legacy", nearest_k: int = 3):
        super().__init__()
        names = tuple(names)
        unknown = sorted(set(names) - set(METRIC_NAMES))
        if unknown or not names:
            raise ValueError(f"metrics must be a non-empty list of {', '.join(METRIC_NAMES)}; got {list(names)}")
        check_resize(extractor, resize)
        self.names, self.kid_subset_size, self.resize, self.nearest_k = names, kid_subset_size, resize, nearest_k
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
        self.prdc_names = tuple(n for n in names if n in PRDC_NAMES)
        self.fake_features = FeatureSet() if self.prdc_names else None
        self.real_features = FeatureSet()  # this rank's real pooled features until the reference is complete
        self.reference: Tensor | None = None  # every rank's real pooled features, in canonical order
        self.reference_cache: tuple[Path, dict[str, Any]] | None = None
        self.num_fake = SumMetric()

    @property
    def real_complete(self) -> bool:
        return self.reference is not None

    @property
    def needs_real(self) -> bool:
        return not self.real_complete and any(n != "is" for n in self.names)

    def features(self, images: Tensor) -> Tensor:
        """The extractor's features of images in [-1, 1], after the ``resize`` mode's resizing."""
        return resized_features(self.extractor, images, self.resize)

    def use_reference_cache(self, path: Path, key: dict[str, Any]) -> bool:
        """Take the reference from ``path`` if it holds ``key`` (True: no real image will be extracted), else write it
        there at the first ``compute()``. Every rank must call it with the same file state (see the callback)."""
        self.reference_cache = (path, key)
        cached = load_reference(path, key) if self.needs_real else None
        if cached is not None:
            self.set_reference(cached)
        return cached is not None

    def set_reference(self, features: Tensor) -> None:
        """Make ``features`` (all ranks' real pooled features) the reference: FID and KID get this rank's share, so
        their DDP sums and concatenations hold each real image once."""
        self.reference = canonical_order(features.float().cpu())
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        share = self.reference[rank::world]
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.update(share.to(metric.device), real=True)
        self.real_features.reset()

    @torch.no_grad()
    def update(self, real: Tensor | None, fake: Tensor) -> None:
        """Add a batch of generated images (and, until the reference is complete, real ones) in [-1, 1]."""
        if self.needs_real and real is not None:
            self.real_features.update(self.features(real)[:, : self.extractor.pool_dim])
        features = self.features(fake)
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.update(features, real=False)
        if self.inception_score is not None:
            self.inception_score.update(features)
        if self.fake_features is not None:
            self.fake_features.update(features[:, : self.extractor.pool_dim])
        self.num_fake.update(float(len(fake)))

    def compute(self) -> dict[str, float]:
        """The metrics over all ranks' images, with the counts they are based on. Call on every rank."""
        if self.needs_real:
            self.set_reference(self.real_features.compute())  # all-gathers every rank's real features
            if self.reference_cache is not None and (not dist.is_initialized() or dist.get_rank() == 0):
                path, key = self.reference_cache
                if key["count"] == len(self.reference):
                    save_reference(path, key, self.reference)
        num_real = len(self.reference) if self.reference is not None else 0
        num_fake = int(self.num_fake.compute())
        values: dict[str, float] = {}
        if self.fid is not None:
            values["fid"] = float(self.fid.compute())
        if self.inception_score is not None:
            mean, std = seeded(self.inception_score.compute)
            values["is"], values["is_std"] = float(mean), float(std)
        if self.kid is not None:
            self.kid.subset_size = min(self.kid_subset_size, num_real, num_fake)
            if self.kid.subset_size == num_real == num_fake:
                # Every "subset" is then the whole of both sets: one MMD^2, computed once, with no spread to report.
                subsets, self.kid.subsets = self.kid.subsets, 1
                try:
                    values["kid"] = float(seeded(self.kid.compute)[0])
                finally:  # the configured count stays for the next evaluation, which may have fewer images
                    self.kid.subsets = subsets
            else:
                mean, std = seeded(self.kid.compute)
                values["kid"], values["kid_std"] = float(mean), float(std)
        if self.fake_features is not None:
            fake = canonical_order(self.fake_features.compute())
            values.update(prdc(self.reference, fake, self.prdc_names, self.nearest_k))
        return {**values, "num_real": num_real, "num_fake": num_fake}

    def reset(self) -> None:
        """Forget the generated images; the reference stays (FID/KID ``reset_real_features=False``)."""
        for metric in (self.fid, self.inception_score, self.kid, self.fake_features, self.num_fake):
            if metric is not None:
                metric.reset()

    def reset_all(self) -> None:
        """Forget the reference too (e.g. a new run, or a process that inherited states)."""
        self.reset()
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.reset_real_features = True
                metric.reset()
                metric.reset_real_features = False
        self.real_features.reset()
        self.reference = None

    def protocol(self) -> dict[str, Any]:
        """What a number means: extractor (with the weights' hash), resize, metric settings. Stored with every value."""
        protocol: dict[str, Any] = {"features": self.extractor.name, "features_info": self.extractor.info,
                                    "metrics": list(self.names), "resize": self.resize}
        if self.inception_score is not None:
            protocol["is_splits"] = self.inception_score.splits
        if self.kid is not None:
            protocol.update(kid_subsets=self.kid.subsets, kid_subset_size_max=self.kid_subset_size)
        if self.prdc_names:
            protocol["nearest_k"] = self.nearest_k
        if self.reference_cache is not None:
            protocol["reference_cache"] = str(self.reference_cache[0])
        return protocol

    def named_values(self, values: dict[str, float], split: str) -> dict[str, float]:
        """``values`` plus each headline value under its ``protocol_key`` (``fid`` -> also ``fid2k_val_classifier``)."""
        named = {protocol_key(k, int(values["num_fake"]), split, self.extractor.name, self.resize): v
                 for k, v in values.items() if k in HEADLINE_VALUES}
        return {**values, **named}


@register_metric(*METRIC_NAMES)
class ImageMetricsGroup:
    """``ImageMetrics`` in ``ganx.evaluate`` (record entries ``values`` and ``protocol``), and a class-conditional
    model's class accuracy and intra-FID on the same classifier (``class_metrics``), as the training callback."""

    def __init__(self, names: list[str], setup: EvaluationSetup):
        cfg, extractor = setup.cfg, setup.extractor
        names = metric_names_for(extractor, names, cfg.features)
        if "fid" in names and not cfg.allow_small_fid:
            require_fid_sample_size(cfg.num_samples, extractor, f"num_samples={cfg.num_samples}",
                                    f"Pass num_samples={extractor.pool_dim} or more, metrics=[kid,is] (KID is unbiased "
                                    "for small sets), or accept the bias with allow_small_fid=true.")
        self.metrics = ImageMetrics(extractor, names, cfg.is_splits, cfg.kid_subsets, cfg.kid_subset_size, cfg.resize,
                                    cfg.nearest_k).to(setup.device)
        if cfg.reference_cache and self.metrics.needs_real:
            self.metrics.use_reference_cache(*held_out_reference(setup.datamodule.val_set, extractor.name, cfg.resize))
        self.model_networks = sorted(pretrained_networks_in(setup.model))
        if extractor.network in self.model_networks:
            log.warning("features=%s: the model trains against these features, so its FID on them can improve without "
                        "better images (Kynkäänniemi et al. 2023); features=auto avoids them.", cfg.features)
        self.class_metrics = None
        if hasattr(setup.model, "num_classes"):
            self.class_metrics = class_metrics_for(extractor, setup.model.num_classes, cfg.resize)
            if self.class_metrics is not None:
                self.class_metrics.to(setup.device)

    def update(self, real: Tensor, fake: Tensor, batch) -> None:
        self.metrics.update(real, fake)
        if self.class_metrics is not None:
            self.class_metrics.update(real, fake, batch[1])

    def compute(self) -> dict[str, Any]:
        protocol = self.metrics.protocol()
        if self.model_networks:
            protocol["model_pretrained_networks"] = self.model_networks
        entries = {"values": self.metrics.named_values(self.metrics.compute(), "val"), "protocol": protocol}
        if self.class_metrics is not None:
            entries["class_metrics"] = self.class_metrics.compute()
        return entries
