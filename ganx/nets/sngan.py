"""SN-GAN ResNet generator and discriminator (Miyato et al. 2018, Appendix B, Table 4 / Figure 8) for 32, 48, 64 and
128 pixel images.

Generator: z -> linear to a start_size x start_size map -> residual up-blocks (BatchNorm, ReLU, 2x nearest
upsampling, 3x3 convs; a learned 1x1 shortcut where the block changes width or size) -> BatchNorm, ReLU, 3x3 conv,
tanh. Discriminator: an "optimized" first block (conv, ReLU, conv, 2x2 average pooling; shortcut: pooling then a
1x1 conv), residual down-blocks (ReLU, 3x3 convs, average pooling), ReLU, global *sum* pooling, a linear layer to one
logit, every weight spectrally normalised. Layouts (in units of ``base_width``, 64 by default) follow the paper's
CIFAR-10 (32) and STL-10 (48) nets and the 64/128 nets of mimicry (Lee & Town 2020) and chainer-gan-lib:

====== ===== ============================== ========================================================
size   start generator widths               discriminator widths (down-sampling blocks marked ↓)
====== ===== ============================== ========================================================
32     4     4, 4, 4, 4 (ch = 256)          2↓, 2↓, 2, 2 (ch = 128)
48     6     8, 4, 2, 1                     1↓, 2↓, 4↓, 8↓, 16
64     4     16, 8, 4, 2, 1                 1↓, 2↓, 4↓, 8↓, 16↓
128    4     16, 16, 8, 4, 2, 1             1↓, 2↓, 4↓, 8↓, 16↓, 16
====== ===== ============================== ========================================================

The residual convs start from Xavier-uniform weights with gain sqrt(2), shortcuts and the outer layers with gain 1
(as chainer-gan-lib and mimicry). The 32x32 pair has 4,276,739 + 1,053,825 parameters (tests/test_sngan.py counts
them from this layout).
"""

import math

import torch
from torch import Tensor, nn

from ganx.errors import ConfigError
from ganx.nets.latent import LatentGenerator
from ganx.nets.spectral import spectral_normalize

# image size -> (start size, generator widths, discriminator widths as (width, downsample)), widths in base_width units
LAYOUTS: dict[int, tuple[int, tuple[int, ...], tuple[tuple[int, bool], ...]]] = {
    32: (4, (4, 4, 4, 4), ((2, True), (2, True), (2, False), (2, False))),
    48: (6, (8, 4, 2, 1), ((1, True), (2, True), (4, True), (8, True), (16, False))),
    64: (4, (16, 8, 4, 2, 1), ((1, True), (2, True), (4, True), (8, True), (16, True))),
    128: (4, (16, 16, 8, 4, 2, 1), ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False))),
}
DISCRIMINATOR_NORMS = ("spectral", "none")


def sngan_layout(image_size: int) -> tuple[int, tuple[int, ...], tuple[tuple[int, bool], ...]]:
    if image_size not in LAYOUTS:
        raise ConfigError(
            f"The SN-GAN ResNet nets are defined for image sizes {sorted(LAYOUTS)}, got image_size={image_size}. "
            "Set data.image_size=32 (or 48, 64, 128)."
        )
    return LAYOUTS[image_size]


def _conv(in_channels: int, out_channels: int, kernel: int, gain: float) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


class GeneratorBlock(nn.Module):
    """x -> shortcut(x) + [BN, ReLU, up 2x, conv3x3, BN, ReLU, conv3x3](x); shortcut: up 2x, then a 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(), nn.Upsample(scale_factor=2),
            _conv(in_channels, out_channels, 3, math.sqrt(2)),
            nn.BatchNorm2d(out_channels), nn.ReLU(),
            _conv(out_channels, out_channels, 3, math.sqrt(2)),
        )
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2), _conv(in_channels, out_channels, 1, 1.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.residual(x)


class DiscriminatorBlock(nn.Module):
    """x -> shortcut(x) + [ReLU, conv3x3, ReLU, conv3x3, (avg pool 2x)](x). The shortcut is x itself when the block
    keeps width and size, else a 1x1 conv (then pooling). ``optimized``: the first block, which sees the image: no
    ReLU before its first conv, and its shortcut pools before the 1x1 conv (Miyato et al. 2018, Appendix B)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, optimized: bool = False):
        super().__init__()
        layers = [] if optimized else [nn.ReLU()]
        layers += [_conv(in_channels, out_channels, 3, math.sqrt(2)), nn.ReLU(),
                   _conv(out_channels, out_channels, 3, math.sqrt(2))]
        pool = [nn.AvgPool2d(2)] if downsample else []
        self.residual = nn.Sequential(*layers, *pool)
        if optimized:
            self.shortcut = nn.Sequential(*pool, _conv(in_channels, out_channels, 1, 1.0))
        elif downsample or in_channels != out_channels:
            self.shortcut = nn.Sequential(_conv(in_channels, out_channels, 1, 1.0), *pool)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.residual(x)


class SNGANResNetGenerator(LatentGenerator):
    """z (N, latent_dim) -> images (N, channels, image_size, image_size) in [-1, 1].

    Args:
        base_width: the width unit of the layout table (64: the paper's widths, ch = 256 at 32x32).
        spectral_norm: spectrally normalise the linear and conv weights too (SAGAN, Zhang et al. 2019, Sec. 4.1).
    """

    def __init__(self, latent_dim: int = 128, image_size: int = 32, channels: int = 3, base_width: int = 64,
                 spectral_norm: bool = False):
        super().__init__()
        self.start_size, widths, _ = sngan_layout(image_size)
        self.latent_dim, self.top_width = latent_dim, widths[0] * base_width
        self.project = nn.Linear(latent_dim, self.top_width * self.start_size**2)
        nn.init.xavier_uniform_(self.project.weight, 1.0)
        nn.init.zeros_(self.project.bias)
        widths = [w * base_width for w in widths]
        self.blocks = nn.Sequential(*(GeneratorBlock(a, b) for a, b in zip(widths, widths[1:], strict=False)))
        self.to_image = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), _conv(widths[-1], channels, 3, 1.0),
                                      nn.Tanh())
        if spectral_norm:
            spectral_normalize(self, (nn.Linear, nn.Conv2d))

    def forward(self, z: Tensor) -> Tensor:
        x = self.project(z).view(-1, self.top_width, self.start_size, self.start_size)
        return self.to_image(self.blocks(x))


class SNGANResNetDiscriminator(nn.Module):
    """images (N, channels, image_size, image_size) -> logits (N,) (no sigmoid: the loss applies the link).

    Args:
        base_width: the width unit of the layout table (64: the paper's widths, ch = 128 at 32x32).
        norm: "spectral" (SN-GAN) or "none" (e.g. for a gradient penalty instead).
    """

    def __init__(self, image_size: int = 32, channels: int = 3, base_width: int = 64, norm: str = "spectral"):
        super().__init__()
        if norm not in DISCRIMINATOR_NORMS:
            raise ConfigError(f"SNGANResNetDiscriminator norm must be one of {DISCRIMINATOR_NORMS}, got {norm!r}.")
        _, _, layout = sngan_layout(image_size)
        blocks, width = [], channels
        for i, (units, downsample) in enumerate(layout):
            blocks.append(DiscriminatorBlock(width, units * base_width, downsample, optimized=i == 0))
            width = units * base_width
        self.blocks = nn.Sequential(*blocks, nn.ReLU())
        self.head = nn.Linear(width, 1)
        nn.init.xavier_uniform_(self.head.weight, 1.0)
        nn.init.zeros_(self.head.bias)
        if norm == "spectral":
            spectral_normalize(self)

    def forward(self, x: Tensor) -> Tensor:
        features = torch.sum(self.blocks(x), dim=(2, 3))  # global sum pooling (the paper's, not average pooling)
        return self.head(features).flatten()
