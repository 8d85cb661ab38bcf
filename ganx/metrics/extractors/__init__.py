"""The feature extractors of the image metrics, each a ``FeatureExtractor`` (``base``): ``inception`` (Inception-v3,
the standard protocol for RGB images), ``classifier`` (a CNN trained on labeled grayscale data) and ``domain`` (a
contrastive CNN trained on the data set itself), the last two trained on first use and cached. ``metrics.features``
names one; ``resolve_features`` and ``build_extractor`` turn that name into a ready extractor."""

import logging
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

from ganx.metrics.extractors.base import FeatureExtractor, MetricsSetupError
from ganx.metrics.extractors.classifier import (
    ClassifierError,
    ClassifierFeatures,
    ensure_classifier,
    is_labeled_grayscale,
)
from ganx.metrics.extractors.domain import domain_features, offline_domain_features
from ganx.metrics.extractors.inception import InceptionFeatures, inception_weights_path

log = logging.getLogger(__name__)

FEATURES = ("auto", "inception", "classifier", "domain")  # or the path of a `python -m ganx.features` file


def resolve_features(features: str, data_cfg: DictConfig) -> str | None:
    """"auto" -> "classifier" for labeled grayscale data (MNIST-like), "inception" for other images, None when the
    data are not images (e.g. 2-D toy points: image metrics do not apply). "domain" is the classifier on labeled
    grayscale data, the contrastive extractor of ``domain`` otherwise; a path names such a file."""
    if features not in FEATURES and not str(features).endswith(".pt"):
        raise MetricsSetupError(f"metrics.features must be one of {', '.join(FEATURES)} or the path of a "
                                f"`python -m ganx.features` file (.pt); got {features!r}.")
    if features not in ("auto", "domain"):
        return features
    if getattr(get_class(data_cfg._target_), "channels", None) not in (1, 3):
        return None if features == "auto" else features
    if is_labeled_grayscale(data_cfg):
        return "classifier"
    return "inception" if features == "auto" else "domain"


def build_extractor(kind: str, data_cfg: DictConfig, inception_weights: str | None = None,
                    classifier_ckpt: str | None = None, domain: Any = None,
                    offline_fallback: bool = False) -> FeatureExtractor:
    """The feature extractor, ready to use: weights found (or downloaded), classifier or domain features loaded (or
    trained on first use; ``domain`` is their recipe, ``metrics.domain``). ``offline_fallback`` (``features=auto``):
    without Inception weights (none given, none cached, no download), domain features instead, with a warning.

    Raises ``MetricsSetupError`` with the fix when that is impossible, e.g. offline without Inception weights.
    """
    if kind == "inception":
        try:
            return InceptionFeatures(inception_weights_path(inception_weights))
        except MetricsSetupError as err:
            if not offline_fallback or inception_weights:
                raise
            return offline_domain_features(data_cfg, domain, err)
    if kind != "classifier":
        return domain_features(kind, data_cfg, domain)
    try:
        path = classifier_ckpt or ensure_classifier(data_cfg)
    except ClassifierError as err:
        raise MetricsSetupError(str(err)) from err
    extractor = ClassifierFeatures(path)
    if get_class(extractor.info["data"]) is not get_class(data_cfg._target_):
        log.warning("The metrics classifier %s was trained on %s, not on this run's %s: its numbers are not the usual "
                    "protocol for this data set.", path, extractor.info["data"], data_cfg._target_)
    return extractor
