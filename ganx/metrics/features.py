"""Feature extractors for FID, IS and KID: images in [-1, 1] -> one row of features per image.

An extractor returns ``(N, pool_dim + num_logits)``: the pooled features FID and KID compare, then the logits IS
scores. One network forward per batch thus feeds all three torchmetrics metrics (``ganx.metrics.image_metrics``),
which matters on a CPU where Inception-v3 dominates the cost of an evaluation.

* ``InceptionFeatures``: torch-fidelity's Inception-v3 port of the TF FID network, as used by torchmetrics
  (pool3 2048-d for FID/KID, the 1008 unbiased logits for IS): the standard protocol for RGB images.
* ``ClassifierFeatures``: a ``ganx.metrics.classifier`` CNN (penultimate layer / logits): the "MNIST FID / IS".
"""

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganx._compat import inception_features

log = logging.getLogger(__name__)

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"


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


def inception_weights_path(path: str | None) -> Path:
    """The Inception weights file: ``path`` if given, else torch hub's cache, downloading it there on first use.

    Raises ``MetricsSetupError`` naming the fixes when neither the file nor a download is available.
    """
    if path:
        weights = Path(path).expanduser()
        if not weights.is_file():
            raise MetricsSetupError(
                f"metrics.inception_weights={path}: no such file. Download {INCEPTION_WEIGHTS_URL} (~92 MB) "
                "and point metrics.inception_weights at it."
            )
        return weights
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    return hub_weights(INCEPTION_WEIGHTS_URL, cached, lambda why: (
        f"FID/IS/KID with Inception-v3 need its weights, which are not at {cached} and could not be downloaded "
        f"({why}). Fixes: (1) on a machine with internet, download {INCEPTION_WEIGHTS_URL} "
        f"and copy it to {cached} (or to $TORCH_HOME/hub/checkpoints/), or pass metrics.inception_weights=PATH; "
        "(2) for MNIST-like data use metrics.features=classifier; for any images metrics.features=domain (learned on "
        "the data set, not comparable to Inception FIDs); (3) train without metrics: metrics=none."
    ))


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


class InceptionFeatures(FeatureExtractor):
    """torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity weights): pool3 (2048) for FID/KID, unbiased logits for IS.

    Grayscale images are repeated to three channels; the network resizes to 299x299 itself (torchmetrics' default
    antialiased bilinear), so numbers match torchmetrics' ``FrechetInceptionDistance(feature=2048)`` on uint8 input.
    """

    pool_dim, num_logits, input_size = 2048, 1008, 299

    def __init__(self, weights_path: str | Path):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        weights_path = Path(weights_path)
        try:
            # torch-fidelity loads the file with weights_only=False; this refuses a file that holds code first.
            torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise MetricsSetupError(f"{weights_path} is not an Inception weights file ({type(err).__name__}: {err})") from err
        self.net = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(weights_path),
        )
        self.name = f"inception-v3-compat:{file_digest(weights_path)}"
        self.info = {"network": "torch-fidelity inception-v3-compat", "weights": str(weights_path),
                     "fid_features": "pool3 (2048)", "is_logits": "logits_unbiased (1008)"}
        self.freeze()

    def forward(self, images: Tensor) -> Tensor:
        x = to_uint8(images)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        # NoTrainInceptionV3.forward returns only the first requested feature; this returns both from one pass.
        pool, logits = inception_features(self.net, x)
        return torch.cat([pool, logits], dim=1).float()


class ClassifierFeatures(FeatureExtractor):
    """A ``ganx.metrics.classifier`` CNN: its ReLU feature layer for FID/KID and its class logits for IS."""

    def __init__(self, checkpoint_path: str | Path):
        super().__init__()
        from ganx.metrics.classifier import ClassifierError, load_classifier  # see metrics/callback.py

        try:
            self.net, meta = load_classifier(checkpoint_path)
        except ClassifierError as err:
            raise MetricsSetupError(str(err)) from err
        arch = meta["arch"]
        self.channels, self.input_size = arch["channels"], arch["input_size"]
        self.pool_dim, self.num_logits = arch["feature_dim"], arch["num_classes"]
        path = Path(checkpoint_path).expanduser()
        self.name = f"classifier:{path.stem}:{file_digest(path)}"
        self.info = {"network": "ganx.classifier SmallCNN", "checkpoint": str(path), "data": meta["facts"]["data"],
                     "data_source": meta["facts"]["source"], "test_accuracy": meta["test_accuracy"],
                     "fid_features": f"penultimate ReLU ({self.pool_dim})", "is_logits": f"classes ({self.num_logits})"}
        self.freeze()

    @staticmethod
    def required(extractor: FeatureExtractor, needed_by: str, num_classes: int | None = None) -> "ClassifierFeatures":
        """``extractor`` if it is a classifier (of ``num_classes`` classes, when given), else why ``needed_by`` needs
        one, as the error."""
        if isinstance(extractor, ClassifierFeatures) and num_classes in (None, extractor.num_logits):
            return extractor
        classes = f"the {num_classes} data classes" if num_classes else "the data's classes"
        raise ValueError(f"{needed_by} need a classifier of {classes} as feature extractor (metrics.features="
                         f"classifier in ganx.train, features=classifier in ganx.evaluate), got "
                         f"{getattr(extractor, 'name', type(extractor).__name__)}.")

    def logits(self, features: Tensor) -> Tensor:
        """The class logits in this extractor's output ``features`` (they follow the ``pool_dim`` FID features)."""
        return features[:, self.pool_dim :]

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[1] != self.channels:
            raise ValueError(f"the classifier takes {self.channels}-channel images, got shape {tuple(images.shape)}")
        x = images.float()
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        features = self.net.features(x)
        return torch.cat([features, self.net.head(features)], dim=1)
