"""Projected discriminator (Sauer et al. 2021, "Projected GANs Converge Faster"): discriminators on the features of a
frozen ImageNet network, for the reference see autonomousvision/projected-gan (pg_modules/projector.py,
discriminator.py).

images -> resized to feature_size (the paper: 224) -> frozen EfficientNet-lite0 (``EfficientNetLiteFeatures``: eval
mode in every mode, no gradients to its weights) -> its four stage maps (strides 4, 8, 16, 32) -> fixed random
projections (Sec. 3.2): cross-channel mixing (CCM, a 1x1 conv per map to 64, 128, 256, 512 channels) and cross-scale
mixing (CSM, a U-Net-like top-down path: add the coarser output, 2x bilinear upsampling, a 1x1 conv halving the
channels; the finest map keeps 64) -> one small discriminator per map (strided 4x4 convs with BatchNorm and
LeakyReLU(0.2) down to 8 px, a 4x4 conv to one channel; spectral norm on every conv, Sec. 3.3) -> every head's logit
map flattened and concatenated per sample: (N, K) logits that the losses average (hinge in the paper).

The mixing convs are random and never trained ("the projection [...] is random and stays fixed", Sec. 3.2). ganx
draws them from ``mixing_seed`` and keeps them as buffers: in checkpoints (a resume has the same projections bit for
bit), in no optimizer. DiffAugment comes before this network (``augment=diffaug``, ganx.models.GAN applies it), as
the paper does. Inputs of 1 channel are repeated to RGB.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganx.nets.minibatch import MinibatchStdDev
from ganx.nets.pretrained import EfficientNetLiteFeatures
from ganx.nets.spectral import spectral_normalize

MIXINGS = ("none", "channel", "scale")  # Sauer et al. 2021, Table 2: no projection, CCM, CCM + CSM
# A head's width at each map size (projected-gan's SingleDisc.channel_dict); a map's size is rounded to the nearest key.
HEAD_WIDTHS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32}
# The heads' normalisation (projected-gan's NormLayer modes, and none). BatchNorm normalises each batch by its own
# statistics, and ganx (as projected-gan) scores real and generated batches in separate passes: a batch of one repeated
# image then normalises to a constant, whatever the image, so a collapsed generator gets no gradient out of it. Group
# normalisation is per sample.
HEAD_NORMS = {"batch": nn.BatchNorm2d, "group": lambda c: nn.GroupNorm(c // 2, c), "none": lambda c: nn.Identity()}
HEAD_END_SIZE = 8  # heads downsample until their map is about 8 px, then a 4x4 conv


class FixedConv1x1(nn.Module):
    """A 1x1 conv whose weight and bias are random buffers: drawn once from ``rng`` as ``nn.Conv2d`` initialises
    (uniform in +-1/sqrt(fan_in), the bias too), then fixed."""

    def __init__(self, in_channels: int, out_channels: int, rng: torch.Generator):
        super().__init__()
        bound = 1 / math.sqrt(in_channels)
        self.register_buffer("weight", (torch.rand(out_channels, in_channels, 1, 1, generator=rng) * 2 - 1) * bound)
        self.register_buffer("bias", (torch.rand(out_channels, generator=rng) * 2 - 1) * bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


class RandomProjection(nn.Module):
    """Stage maps -> mixed maps: CCM (mixing="channel") and CSM on top (mixing="scale"), or the maps as they are."""

    def __init__(self, channels: list[int], mixing: str, width: int, seed: int):
        super().__init__()
        self.mixing = mixing
        rng = torch.Generator().manual_seed(seed)
        mixed = [width * 2**i for i in range(len(channels))]  # projected-gan's expand=True
        self.channel_mixing = nn.ModuleList(
            [FixedConv1x1(c, m, rng) for c, m in zip(channels, mixed, strict=True)] if mixing != "none" else [])
        # CSM halves the channels at each step up, except the finest map's, which keeps ``width``.
        scale_out = [width, *mixed[:-1]]
        self.scale_mixing = nn.ModuleList(
            [FixedConv1x1(m, s, rng) for m, s in zip(mixed, scale_out, strict=True)] if mixing == "scale" else [])
        self.channels = {"none": channels, "channel": mixed, "scale": scale_out}[mixing]
        self.upsampling = 2 if mixing == "scale" else 1

    def forward(self, maps: list[Tensor]) -> list[Tensor]:
        if self.mixing == "none":
            return maps
        maps = [mix(x) for mix, x in zip(self.channel_mixing, maps, strict=True)]
        if self.mixing == "channel":
            return maps
        out: list[Tensor] = []
        coarser = None
        for mix, x in zip(reversed(self.scale_mixing), reversed(maps), strict=True):
            x = x if coarser is None else x + coarser
            # The 1x1 conv and bilinear upsampling (weights summing to 1) commute: convolving first costs a quarter.
            coarser = F.interpolate(mix(x), scale_factor=2, mode="bilinear", align_corners=True)
            out.append(coarser)
        return out[::-1]


def head(in_channels: int, map_size: int, mbstd_group_size: int = 0, norm: str = "batch",
         min_blocks: int = 0) -> tuple[nn.Sequential, int]:
    """projected-gan's SingleDisc: strided 4x4 convs (normalisation ``norm``, LeakyReLU(0.2)) from the nearest
    width-table size down to 8 px, [3x3 convs at stride 1 until the head has ``min_blocks`` such blocks,] [the
    minibatch standard deviation as one more channel,] then a 4x4 conv to one logit channel. Returns the head and the
    side of its logit map."""
    size = min(HEAD_WIDTHS, key=lambda key: abs(key - map_size))
    layers: list[nn.Module] = []
    width, blocks = in_channels, 0
    while size > HEAD_END_SIZE or blocks < min_blocks:
        stride = 2 if size > HEAD_END_SIZE else 1
        size //= stride
        conv = nn.Conv2d(width, HEAD_WIDTHS[size], 4, 2, 1) if stride == 2 else nn.Conv2d(width, HEAD_WIDTHS[size], 3, 1, 1)
        layers += [conv, HEAD_NORMS[norm](HEAD_WIDTHS[size]), nn.LeakyReLU(0.2)]
        width, blocks = HEAD_WIDTHS[size], blocks + 1
        map_size //= stride
    if mbstd_group_size:
        layers.append(MinibatchStdDev(mbstd_group_size))
        width += 1
    layers.append(nn.Conv2d(width, 1, 4, bias=False))
    return nn.Sequential(*layers), map_size - 3


class ProjectedDiscriminator(nn.Module):
    """images (N, channels, image_size, image_size) in [-1, 1] -> logits (N, K), K = the heads' logits together
    (64 at feature_size=224). No sigmoid: the loss applies the link function.

    Args:
        image_size: side of the images (any: they are resized to feature_size).
        channels: 1 or 3.
        feature_size: the side the images are resized to for the feature network, a multiple of 32 from 64 (the paper:
            224; 128 or 64 cost less on a CPU). Bilinear, antialiased when shrinking.
        variant: the EfficientNet-lite (lite0 in the paper; lite1, lite2).
        mixing: none | channel | scale, the random projection (scale: CCM + CSM, the paper's).
        mixing_width: CCM's width at stride 4 (64); it doubles per stage.
        mixing_seed: seed of the random projection.
        head_norm: batch | group | none, the heads' normalisation (``HEAD_NORMS``; batch: the paper's).
        mbstd_group_size: 0, or the group size of a minibatch standard deviation channel before each head's last conv
            (not in the paper: a frozen feature network makes mode collapse cheap for the generator, and this lets
            the heads see a collapsed batch; the batch size must be a multiple of it).
        min_head_blocks: 0, or the fewest conv-norm-LeakyReLU blocks of each head; blocks past the 8 px end run at
            stride 1 (3x3 convs). A head's depth otherwise follows its map's size: at feature_size=224 the paper's
            heads have 4, 3, 2, 1 blocks, at 64 they have 2, 1, 0, 0, the two coarsest a single linear conv on a fixed
            linear projection (one direction per head in feature space; experiments/faces_in_minutes tested it).
    """

    def __init__(self, image_size: int = 64, channels: int = 3, feature_size: int = 224, variant: str = "lite0",
                 mixing: str = "scale", mixing_width: int = 64, mixing_seed: int = 0, head_norm: str = "batch",
                 mbstd_group_size: int = 0, min_head_blocks: int = 0):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"ProjectedDiscriminator reads 1- or 3-channel images (an ImageNet network); got "
                             f"channels={channels}.")
        if mixing not in MIXINGS:
            raise ValueError(f"model.discriminator.mixing must be one of {MIXINGS}; got {mixing!r}.")
        if feature_size < 64 or feature_size % 32:
            raise ValueError(f"model.discriminator.feature_size must be a multiple of 32 from 64 (the network "
                             f"downsamples 32 times; 224 in the paper); got {feature_size}.")
        if head_norm not in HEAD_NORMS:
            raise ValueError(f"model.discriminator.head_norm must be one of {tuple(HEAD_NORMS)}; got {head_norm!r}.")
        if mbstd_group_size < 0:
            raise ValueError(f"model.discriminator.mbstd_group_size must be 0 (off) or a group size; got "
                             f"{mbstd_group_size}.")
        if min_head_blocks < 0:
            raise ValueError(f"model.discriminator.min_head_blocks must be >= 0 (0: the depth the map size gives); got "
                             f"{min_head_blocks}.")
        self.image_size, self.feature_size = image_size, feature_size
        self.features = EfficientNetLiteFeatures(variant, input_size=feature_size)
        self.projection = RandomProjection(self.features.channels, mixing, mixing_width, mixing_seed)
        sizes = [feature_size // r * self.projection.upsampling for r in self.features.reductions]
        heads, self.logit_sides = zip(*(head(c, s, mbstd_group_size, head_norm, min_head_blocks)
                                        for c, s in zip(self.projection.channels, sizes, strict=True)), strict=True)
        if min(self.logit_sides) < 1:
            raise ValueError(f"At feature_size={feature_size} with mixing={mixing}, the coarsest map is too small for "
                             "a head's 4x4 conv; raise model.discriminator.feature_size (or use mixing=scale).")
        self.heads = nn.ModuleList(heads)
        spectral_normalize(self.heads, (nn.Conv2d,))

    def forward(self, x: Tensor) -> Tensor:
        maps = self.projection(self.features.stage_maps(x))
        # Stage maps are channels-last: reshape, not view.
        return torch.cat([h(m).reshape(len(x), -1) for h, m in zip(self.heads, maps, strict=True)], dim=1)
