"""Sample-quality metrics. ``modes``: mode coverage of 2-D Gaussian-mixture samples. ``image_metrics``: FID, IS and
KID with torchmetrics on ``features`` (Inception-v3 or a domain classifier); ``callback``: the same during training;
``parzen``: the Gaussian Parzen-window log-likelihood of Goodfellow et al. 2014; ``evaluations``: the run's evaluation
log, which every training-time evaluator appends to."""

from ganx.metrics.callback import ImageMetricsCallback, build_extractor, build_training_metrics, resolve_features
from ganx.metrics.features import ClassifierFeatures, FeatureExtractor, InceptionFeatures, MetricsSetupError
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
