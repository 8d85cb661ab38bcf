"""Sample-quality metrics.

* ``extractors``: the feature networks by protocol name (Inception-v3, ImageNet EfficientNet-lite, the classifier and
  domain features, each with its training);
* metric math: ``image_metrics`` (FID, IS, KID, precision/recall, density/coverage on one extractor), ``prdc``,
  ``class_coverage``, ``conditional`` (class accuracy, intra-FID), ``parzen``, ``path_length``, ``modes``, ``resize``;
* ``registry``: ``ganx.evaluate``'s metrics by name (``register_metric`` in each metric's module);
* Lightning glue: ``callback`` (the same image metrics during training), ``modes.ModeCoverage``;
* storage: ``evaluations`` (the run's evaluation log), ``reference`` (the held-out features cached on disk).
"""

from ganx.metrics.callback import ImageMetricsCallback, build_training_metrics
from ganx.metrics.extractors import build_extractor, resolve_features
from ganx.metrics.extractors.base import FeatureExtractor, MetricsSetupError
from ganx.metrics.extractors.classifier import ClassifierFeatures
from ganx.metrics.extractors.inception import InceptionFeatures
from ganx.metrics.image_metrics import ImageMetrics

__all__ = [
    "ClassifierFeatures",
    "FeatureExtractor",
    "ImageMetrics",
    "ImageMetricsCallback",
    "InceptionFeatures",
    "MetricsSetupError",
    "build_extractor",
    "build_training_metrics",
    "resolve_features",
]
