"""What every feature extractor of FID, IS and KID is: images in [-1, 1] -> one row of features per image.

An extractor returns ``(N, pool_dim + num_logits)``: the pooled features FID and KID compare, then the logits IS
scores. One network forward per batch thus feeds all three torchmetrics metrics (``ganx.metrics.image_metrics``),
which matters on a CPU where Inception-v3 dominates the cost of an evaluation. Each extractor module of this package
registers a builder under its protocol names (``@register_extractor("domain")``); ``ganx.metrics.extractors``
imports them all and ``build_extractor`` picks one by name.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class MetricsSetupError(RuntimeError):
    """The metrics cannot run as configured (e.g. no Inception weights offline); raised before training starts."""


def to_uint8(images: Tensor) -> Tensor:
    """Generator/data range [-1, 1] -> uint8 [0, 255], rounded as when saving a PNG.

    Feeding [-1, 1] floats where [0, 1] or uint8 is expected is a frequent FID bug; ``(x * 255).byte()`` on [0, 1]
    truncates instead of rounding, a small bias on every pixel.
    """
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def file_digest(path: Path) -> str:
    """First 12 hex digits of the file's SHA-256: names the exact weights behind a number."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:12]


class FeatureExtractor(nn.Module):
    """Frozen network: images (N, C, H, W) in [-1, 1] -> (N, pool_dim + num_logits).

    ``name`` and ``info`` describe the protocol; they are recorded with every number computed from these features.
    ``network`` names a pretrained network a model may also have trained against (``effnet_lite0``), so that
    ``features=auto`` can avoid scoring a model on its own discriminator's features; None for the others.
    """

    name: str
    pool_dim: int
    num_logits: int
    info: dict[str, Any]
    network: str | None = None

    def freeze(self) -> "FeatureExtractor":
        return self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)  # Lightning puts modules in train mode; an extractor must never leave eval mode


class ColumnSlice(nn.Module):
    """Gives a torchmetrics metric its columns of precomputed features (torchmetrics calls ``feature(x)`` on what
    ``update`` receives; ``num_features`` spares FID its dummy forward at 299x299)."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop, self.num_features = start, stop, stop - start

    def forward(self, features: Tensor) -> Tensor:
        return features[:, self.start : self.stop]


def hub_weights(url: str, path: Path, explain: Callable[[str], str]) -> Path:
    """``path`` (torch hub's cache), downloading ``url`` there on first use; offline or failing, a
    ``MetricsSetupError`` with ``explain(<why the download failed>)``."""
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as err:  # offline: URLError; a proxy or a full disk: other OSErrors
        raise MetricsSetupError(explain(f"{type(err).__name__}: {err}")) from err
    return path


@dataclass(frozen=True)
class ExtractorOptions:
    """What builders may need beyond the data config (the ``metrics`` keys of the same names)."""

    inception_weights: str | None = None
    classifier_ckpt: str | None = None
    domain: Any = None  # the domain features' recipe (``metrics.domain``)

    @classmethod
    def of(cls, cfg: Any) -> "ExtractorOptions":
        """From a config holding these keys (``metrics``, ``ganx.evaluate``'s); a missing key keeps its default."""
        return cls(**{key: getattr(cfg, key, None) for key in ("inception_weights", "classifier_ckpt", "domain")})


def registrar(table: dict[str, Any], kind: str) -> Callable[..., Callable[[Any], Any]]:
    """``register(*names)``: a decorator entering its object in ``table`` under each name (a name taken twice is an
    error naming both). The metrics (``register_metric``) and the extractors (``register_extractor``) use one each."""
    def register_as(*names: str) -> Callable[[Any], Any]:
        def register(entry: Any) -> Any:
            for name in names:
                if name in table:
                    raise ValueError(f"{kind} {name!r} is registered twice ({table[name]} and {entry})")
                table[name] = entry
            return entry

        return register

    return register_as


# (data config, options) -> a ready extractor. A builder may also say, as attributes, the ``pool_dim`` and ``network`` its
# extractor will have, so that features=auto passes over a candidate without building it (EfficientNet: seconds).
Builder = Callable[[Any, ExtractorOptions], FeatureExtractor]
BUILDERS: dict[str, Builder] = {}
# ``@register_extractor("domain")``: the builder of ``metrics.features=domain``.
register_extractor = registrar(BUILDERS, "extractor")
