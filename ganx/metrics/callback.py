"""Training-time FID / IS / KID (and a conditional model's class metrics), run in Lightning's validation loop, and the
set-up checks that run before training.

Every ``eval_every`` generator steps (``trainer.val_check_interval`` counts training batches, which are generator
steps in ganx) and at the last step, Lightning runs the validation loop over the held-out real split, sharded across
DDP ranks without duplicates (``ImageDataModule.val_dataloader``). The model's ``validation_step`` returns
``(real, fake)`` for each batch (``AdversarialModule.generate_for_metrics``); this callback feeds them to
``ImageMetrics`` (and ``ClassConditionalMetrics``), computes on every rank, logs ``val/fid``, ``val/is`` (+ ``_std``),
``val/kid`` (+ ``_std`` when its subsets are smaller than the sets: on whole sets it is one MMD^2), ``val/precision``, ``val/recall``, ``val/density``, ``val/coverage``, each headline value also under its
protocol name (``val/fid2k_val_classifier``, see ``protocol_key``), with ``val/num_real`` and ``val/num_fake``, and
appends a row with the full protocol to the evaluation log (``ganx.metrics.evaluations``). The real split's features
come from the on-disk reference cache when an earlier run or evaluation extracted them under the same protocol
(``ganx.metrics.reference``). ``conf/metrics/default.yaml`` adds it to the run's callbacks.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from omegaconf import DictConfig
from torch import Tensor

from ganx.metrics.conditional import ClassConditionalMetrics, class_metrics_for
from ganx.metrics.evaluations import append_evaluation, metric_of
from ganx.metrics.extractors import MetricsSetupError, build_extractor, pretrained_networks_in, resolve_features
from ganx.metrics.extractors.base import ExtractorOptions
from ganx.metrics.extractors.inception import InceptionFeatures
from ganx.metrics.image_metrics import HEADLINE_VALUES, ImageMetrics, metric_names_for, require_fid_sample_size
from ganx.metrics.reference import held_out_reference

log = logging.getLogger(__name__)

class ImageMetricsCallback(L.Callback):
    """Feeds the validation loop's ``(real, fake)`` batches to ``ImageMetrics`` and reports the values.

    Args:
        metrics: the metrics and their feature extractor.
        log_path: the evaluation log (``<run dir>/evaluations.jsonl``, see ``ganx.metrics.evaluations``): one JSON
            row per evaluation with values, counts and protocol; None: not recorded.
        allow_small_fid: compute FID even on fewer held-out images than feature dimensions (biased; refused
            before training otherwise, see ``require_fid_sample_size``).
        class_metrics: class accuracy and intra-FID of a class-conditional model, on the same features (the
            validation batches' labels are the classes of both the real and the generated images).
        reference_cache: take the held-out split's features from the on-disk cache, or write them there at the first
            evaluation (``ganx.metrics.reference``).
        rebuild_avoiding: ``features=auto``: the metrics on another extractor, avoiding the given pretrained networks;
            used at ``setup`` when the model trains against the extractor's network (None: a warning only).
    """

    needs_validation_loop = True  # ganx.train turns Lightning's validation loop off when no callback needs it

    def __init__(self, metrics: ImageMetrics, log_path: str | Path | None, allow_small_fid: bool = False,
                 class_metrics: ClassConditionalMetrics | None = None, reference_cache: bool = False,
                 rebuild_avoiding: Callable[[set[str]], ImageMetrics] | None = None):
        self.metrics = metrics
        self.rebuild_avoiding = rebuild_avoiding
        self.model_networks: set[str] = set()
        self.reference_cache = reference_cache
        self.log_path = Path(log_path) if log_path else None
        self.allow_small_fid = allow_small_fid
        self.class_metrics = class_metrics

    def protocol(self) -> dict[str, Any]:
        protocol = {**self.metrics.protocol(), "real_split": "val"}
        if self.model_networks:
            protocol["model_pretrained_networks"] = sorted(self.model_networks)
        if self.metrics.kid is not None:
            protocol["kid_subset_size"] = self.metrics.kid.subset_size
        if self.class_metrics is not None:
            protocol["class_metrics"] = f"class_accuracy and intra_fid over {self.class_metrics.num_classes} classes"
        return protocol

    def avoid_own_networks(self, pl_module: L.LightningModule) -> None:
        """Never score a model on the features its discriminator sees (they improve without better images,
        Kynkäänniemi et al. 2023): under ``features=auto`` another extractor, else a warning."""
        self.model_networks = pretrained_networks_in(pl_module)
        network = self.metrics.extractor.network
        if network not in self.model_networks:
            return
        if self.rebuild_avoiding is None:
            rank_zero_warn(f"metrics.features={network}: the model trains against {network}'s features, so its FID "
                           "on them can improve without better images (Kynkäänniemi et al. 2023); prefer another "
                           "extractor, or features=auto, which avoids it.")
            return
        self.metrics = self.rebuild_avoiding(self.model_networks)
        rank_zero_warn(f"metrics: the model trains against {network}'s features; features=auto scores it on "
                       f"{self.metrics.extractor.name} instead.")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.avoid_own_networks(pl_module)
        held_out = getattr(getattr(trainer, "datamodule", None), "val_set", None)
        if self.metrics.fid is not None and held_out is not None and not self.allow_small_fid:
            require_fid_sample_size(
                len(held_out), self.metrics.extractor, f"the held-out split holds {len(held_out)} (data.val_size; the "
                "test folders of paired and unpaired data)", "Raise data.val_size (or add test images), leave FID out "
                "(metrics.names=[kid,is] metrics.best_by=kid: KID is unbiased for small sets), or accept the bias "
                "with metrics.allow_small_fid=true.")
        # A process may inherit metric states (ddp_spawn shares them; a second fit reuses the callback): start clean.
        for metrics in filter(None, (self.metrics, self.class_metrics)):
            metrics.to(pl_module.device)
            metrics.reset_all()
        if self.reference_cache and held_out is not None and self.metrics.needs_real:
            self._use_reference_cache(trainer, held_out)
        if isinstance(self.metrics.extractor, InceptionFeatures) and pl_module.device.type == "cpu":
            held_out = len(getattr(getattr(trainer, "datamodule", None), "val_set", None) or ())
            rank_zero_warn(
                f"FID/IS/KID with Inception-v3 on the CPU: each evaluation runs the 299x299 network on {held_out} "
                "generated images (and once on as many real ones), about 0.5 s per image per CPU thread (measured on "
                "a 2-core machine): minutes per evaluation. Raise eval_every, lower data.val_size, or train with "
                "metrics=none and run python -m ganx.evaluate on the checkpoints you care about."
            )

    def _use_reference_cache(self, trainer: L.Trainer, held_out) -> None:
        path, key = held_out_reference(held_out, self.metrics.extractor.name, self.metrics.resize)
        hit = self.metrics.use_reference_cache(path, key)
        # A file another run writes meanwhile may be seen by some ranks only: use it only if every rank has it.
        if not trainer.strategy.reduce_boolean_decision(hit, all=True):
            if hit:
                self.metrics.reset_all()
                self.metrics.reference_cache = (path, key)
            hit = False
        rank_zero_info("Metrics: held-out reference features %s %s", "read from" if hit else "will be cached at", path)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        protocol = self.protocol()
        for logger in trainer.loggers:
            logger.log_hyperparams({"metrics_protocol": protocol})
        rank_zero_info("Metrics: %s on %s features, every eval_every generator steps", "/".join(self.metrics.names),
                 protocol["features"])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        # Not a stop on a metric (no ganx callback stops a run on a metric's value; a run ends at steps=,
        # trainer.max_time, a NaN/Inf loss or a signal): the run stops here anyway, at its last batch, and asking
        # Lightning to stop makes it evaluate the final generator too (val_check_interval fires on multiples of
        # eval_every only) and lets the best checkpoint consider it.
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx: int = 0) -> None:
        real, fake = self._unpack(outputs, pl_module)
        if trainer.sanity_checking:
            # Run the extractor on a few images now, so a shape or range problem shows before training, not after
            # eval_every steps; the statistics start with the first real evaluation.
            self.metrics.features(real[:2])
            self.metrics.features(fake[:2])
            return
        self.metrics.update(real, fake)
        if self.class_metrics is not None:
            self.class_metrics.update(real, fake, batch[1])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        values = self.metrics.compute()  # on every rank: torchmetrics all-gathers the states here
        self.metrics.reset()
        class_values = {}
        if self.class_metrics is not None:
            class_values = self.class_metrics.compute()
            self.class_metrics.reset()
        named = self.metrics.named_values(values, "val")
        logged = {f"val/{k}": float(v) for k, v in {**named, **class_values}.items()}
        # For BestCheckpoint (callback_metrics). Every rank holds the same values; sync_dist only keeps Lightning's
        # distributed logging consistent. The loggers get them at the generator step evaluated (Lightning would log
        # them one step earlier: it counts the batch only after validation).
        pl_module.log_dict(logged, sync_dist=True, logger=False)
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=pl_module.generator_steps)
        if trainer.is_global_zero:
            step, seconds = pl_module.generator_steps, round(time.perf_counter() - self._started, 2)
            protocol = self.protocol()
            if self.log_path is not None:
                append_evaluation(self.log_path, step, logged, protocol, seconds=seconds)
            shown = ", ".join(f"{k} {values[k]:.4g}" for k in HEADLINE_VALUES if k in values)
            log.info("step %s: %s (%d generated vs %d real, %s; %.1f s)", step, shown,
                     values["num_fake"], values["num_real"], protocol["features"], seconds)
            if class_values:
                log.info("step %s: class accuracy %.3f, intra-FID %.4g (>= %d images per class and side)", step,
                         class_values["class_accuracy"], class_values["intra_fid"],
                         class_values["intra_fid_min_images"])

    @staticmethod
    def _unpack(outputs: Any, pl_module: L.LightningModule) -> tuple[Tensor, Tensor]:
        if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2 and all(isinstance(t, Tensor) for t in outputs)):
            raise TypeError(
                f"{type(pl_module).__name__}.validation_step must return (real, fake) image batches for the metrics "
                f"(see AdversarialModule.generate_for_metrics), got {type(outputs).__name__}."
            )
        return outputs[0], outputs[1]

    def state_dict(self) -> dict[str, Any]:
        # The protocol of the numbers, kept in every checkpoint (the run config stays the run's config.yaml); metric
        # states are recomputed after a resume, and the extractor is not part of a run's checkpoint.
        return {"protocol": self.protocol()}


def build_training_metrics(cfg: DictConfig | None, data_cfg: DictConfig, log_path: str | Path | None = None,
                           num_classes: int | None = None) -> ImageMetricsCallback | None:
    """The metrics callback for ``ganx.train`` (``callbacks.image_metrics`` of ``conf/metrics/default.yaml``), or
    None for ``metrics=none`` / non-image data. ``num_classes`` (a class-conditional model's ``model.num_classes``)
    adds class accuracy and intra-FID when the features are a classifier of those classes.

    Instantiated with the other callbacks before the trainer is built, so a missing extractor stops the run before
    any training step.
    """
    if not cfg:
        return None
    kind = resolve_features(cfg.features, data_cfg)
    if kind is None:
        log.info("metrics: %s does not yield images; no FID/IS/KID.", data_cfg._target_)
        return None
    names = list(cfg.names)
    best_metric = metric_of(cfg.best_by)
    if best_metric not in ("fid", "kid") or best_metric not in names:
        raise MetricsSetupError(f"metrics.best_by={cfg.best_by} selects checkpoints/best.ckpt (lowest value): it must "
                                f"be fid or kid (or its protocol name, e.g. fid2k_val_classifier) and among "
                                f"metrics.names={names}.")
    auto = cfg.features == "auto"

    def image_metrics(avoid: set[str]) -> ImageMetrics:
        extractor = build_extractor(kind, data_cfg, ExtractorOptions.of(cfg), auto, avoid)
        return ImageMetrics(extractor, metric_names_for(extractor, names, cfg.features), cfg.is_splits,
                            cfg.kid_subsets, cfg.kid_subset_size, cfg.get("resize", "legacy"), cfg.get("nearest_k", 3))

    metrics = image_metrics(set())
    class_metrics = class_metrics_for(metrics.extractor, num_classes, metrics.resize) if num_classes else None
    return ImageMetricsCallback(metrics, log_path, cfg.get("allow_small_fid", False), class_metrics,
                                cfg.get("reference_cache", False), image_metrics if auto else None)
