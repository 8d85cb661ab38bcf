"""What every feature extractor of FID, IS and KID is: images in [-1, 1] -> one row of features per image.

An extractor returns ``(N, pool_dim + num_logits)``: the pooled features FID and KID compare, then the logits IS
scores. One network forward per batch thus feeds all three torchmetrics metrics (``ganx.metrics.image_metrics``),
which matters on a CPU where Inception-v3 dominates the cost of an evaluation. The extractors: ``inception``,
``classifier`` and ``domain`` in this package; ``ganx.metrics.extractors.build_extractor`` picks one.
"""

import hashlib
from collections.abc import Callable
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
    """

    name: str
    pool_dim: int
    num_logits: int
    info: dict[str, Any]

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
