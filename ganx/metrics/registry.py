"""``ganx.evaluate``'s metrics by name, registered where they are computed (as StyleGAN2-ADA's ``register_metric``).

A metric module registers a factory under the names it answers, ``@register_metric("parzen")``. The factory gets the
requested names among its own and the ``EvaluationSetup``, checks what it needs there (before any image is
generated), and returns an object with

    update(real, fake, batch)   # held-out and generated images in [-1, 1], and the data loader's batch they came from
    compute() -> dict           # the entries it adds to the evaluation record

Names one factory answers (fid, is, kid, pr, dc: one extractor pass feeds them all) share one object. Every module of
``ganx.metrics`` is imported when the registry is first read, so a new metric is one new file there.
"""

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import Tensor

from ganx.metrics.extractors import build_extractor, pretrained_networks_in, resolve_features
from ganx.metrics.extractors.base import ExtractorOptions, FeatureExtractor, MetricsSetupError, registrar


class EvaluationMetric(Protocol):
    def update(self, real: Tensor, fake: Tensor, batch: Sequence[Any]) -> None: ...

    def compute(self) -> dict[str, Any]: ...


@dataclass
class EvaluationSetup:
    """What a metric may need: the command's config (``ganx.evaluate.EvaluateConfig``: a metric reads its own keys,
    e.g. ``parzen_val_size``), the evaluation data, the device, the feature extractor and the model being evaluated.
    Extractor and model are built when first asked for, so a metric's own checks come before either (except that
    ``features=auto`` on RGB data builds the model first, to avoid the pretrained networks it trains against)."""

    cfg: Any
    data_cfg: DictConfig
    datamodule: Any
    device: torch.device
    load_model: Callable[[], Any]

    @cached_property
    def model(self) -> Any:
        return self.load_model()

    @cached_property
    def extractor(self) -> FeatureExtractor:
        """The evaluation's one feature extractor, shared by the metrics that need one."""
        kind = resolve_features(self.cfg.features, self.data_cfg)
        if kind is None:
            raise MetricsSetupError(f"{self.data_cfg._target_} does not yield images: FID/IS/KID do not apply.")
        auto = self.cfg.features == "auto"
        avoid = pretrained_networks_in(self.model) if auto and kind == "inception" else set()
        return build_extractor(kind, self.data_cfg, ExtractorOptions.of(self.cfg), auto, avoid)


Factory = Callable[[list[str], EvaluationSetup], EvaluationMetric]
_FACTORIES: dict[str, Factory] = {}


def register_metric(*names: str) -> Callable[[Factory], Factory]:
    """Register ``factory`` as the metric answering ``names`` in ``ganx.evaluate metrics=[...]``."""
    return registrar(_FACTORIES, "metric")(*names)


def metric_names() -> list[str]:
    """Every registered name."""
    import ganx.metrics

    for module in pkgutil.iter_modules(ganx.metrics.__path__):
        importlib.import_module(f"ganx.metrics.{module.name}")
    return list(_FACTORIES)


def check_metric_names(names: Sequence[str]) -> None:
    valid = metric_names()
    if not names or set(names) - set(valid):
        raise ValueError(f"metrics must be a list of {', '.join(valid)}; got {list(names)}")


def build_metrics(names: Sequence[str], setup: EvaluationSetup) -> list[EvaluationMetric]:
    """The metrics answering ``names``, each factory once, in the order they were asked for."""
    check_metric_names(names)
    factories = dict.fromkeys(_FACTORIES[name] for name in names)
    return [factory([n for n in names if _FACTORIES[n] is factory], setup) for factory in factories]
