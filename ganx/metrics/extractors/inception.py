"""torch-fidelity's Inception-v3 port of the TF FID network, as used by torchmetrics (pool3 2048-d for FID/KID, the
1008 unbiased logits for IS): the standard protocol for RGB images."""

from pathlib import Path

import torch
from torch import Tensor

from ganx._compat import inception_features
from ganx.metrics.extractors.base import (
    ExtractorOptions,
    FeatureExtractor,
    MetricsSetupError,
    file_digest,
    hub_weights,
    register_extractor,
    to_uint8,
)

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"


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


class InceptionFeatures(FeatureExtractor):
    """torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity weights): pool3 (2048) for FID/KID, unbiased logits for IS.

    Grayscale images are repeated to three channels; the network resizes to 299x299 itself (torchmetrics' default
    antialiased bilinear), so numbers match torchmetrics' ``FrechetInceptionDistance(feature=2048)`` on uint8 input.
    """

    pool_dim, num_logits, input_size = 2048, 1008, 299
    network = "inception"  # as a module names it in ``pretrained_features`` (ganx.metrics.extractors)

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


@register_extractor("inception")
def build_inception(data_cfg, options: ExtractorOptions) -> InceptionFeatures:
    return InceptionFeatures(inception_weights_path(options.inception_weights))
