"""FastGAN generator (Liu et al. 2021, "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image
Synthesis"), as Projected GAN trains it (Sauer et al. 2021, ``pg_modules/networks_fastgan.py``), for 32..256 px.

z, normalised to unit second moment (Karras et al. 2018's pixel norm), -> a 4x4 transposed conv -> up-blocks to
image_size (2x upsampling, 3x3 conv, BatchNorm, GLU; ``lite=False`` adds a second conv and a learned-strength noise
input per conv) -> 3x3 conv to RGB -> tanh. Skip-layer excitation (Liu et al. 2021, Sec. 3.1, Eq. 1) gates the 64, 128
and 256 px maps channel-wise by the 4, 8 and 16 px maps: x_high * sigmoid(conv1x1(swish(conv4x4(pool4(x_low))))).
Every conv is spectrally normalised, as in both reference implementations. Widths are ``base_width`` (ngf) times
16, 8, 4, 2, 2, 1, 1/2 at 4, 8, ..., 256 px; the GLU halves each conv's output.

Departures, each a config key or noted: ``tanh`` on the output as FastGAN (Projected GAN's copy has none: ganx
generators return [-1, 1]); ``upsample=bilinear`` (the references use nearest, whose 3x3 convs leave checkerboard
artefacts: Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"); below 256 px the network stops at
image_size (Projected GAN's copy builds its 256 px layers at every size).
"""

import torch
from torch import Tensor, nn

from ganx.nets.latent import LatentGenerator
from ganx.nets.spectral import spectral_normalize

# Width multipliers of base_width per resolution (FastGAN's nfc_multi).
WIDTHS = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}
# Skip-layer excitation: the map at key is gated by the map at value.
EXCITATION_SOURCES = {64: 4, 128: 8, 256: 16}
UPSAMPLING = ("nearest", "bilinear")


class GLU(nn.Module):
    """Gated linear unit over channels (Dauphin et al. 2017): a * sigmoid(b) for the two halves a, b."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


class NoiseInjection(nn.Module):
    """x + w * noise, one noise value per pixel shared by the channels, w learned from 0 (StyleGAN's noise inputs)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.weight * torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)


def up_block(in_width: int, out_width: int, lite: bool, upsample: str) -> nn.Sequential:
    """2x upsampling, then one (lite) or two [3x3 conv, (noise,) BatchNorm, GLU] to out_width channels."""
    layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode=upsample)]
    width = in_width
    for _ in range(1 if lite else 2):
        layers += [nn.Conv2d(width, 2 * out_width, 3, padding=1, bias=False)]
        layers += [] if lite else [NoiseInjection()]
        layers += [nn.BatchNorm2d(2 * out_width), GLU()]
        width = out_width
    return nn.Sequential(*layers)


class SkipLayerExcitation(nn.Module):
    """Liu et al. 2021, Eq. 1: the high-resolution map times channel gates computed from a low-resolution one."""

    def __init__(self, low_width: int, high_width: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Conv2d(low_width, high_width, 4, bias=False),
            nn.SiLU(),  # Swish
            nn.Conv2d(high_width, high_width, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return high * self.gate(low)


class FastGANGenerator(LatentGenerator):
    """z (N, latent_dim) -> images (N, channels, image_size, image_size) in [-1, 1].

    Args:
        latent_dim: size of z (256 in Projected GAN).
        image_size: 32, 64, 128 or 256.
        channels: output channels.
        base_width: ngf, the width unit (128 in Projected GAN; 64 in FastGAN's own code).
        lite: one conv per up-block and no noise inputs (Projected GAN's "fastgan_lite"); False: FastGAN's blocks.
        upsample: nearest (the references) | bilinear (no checkerboard artefacts).
    """

    def __init__(self, latent_dim: int = 256, image_size: int = 256, channels: int = 3, base_width: int = 128,
                 lite: bool = True, upsample: str = "nearest"):
        super().__init__()
        if image_size not in (32, 64, 128, 256):
            raise ValueError(f"FastGANGenerator makes 32, 64, 128 or 256 px images; got image_size={image_size}. "
                             "Set data.image_size to one of them.")
        if upsample not in UPSAMPLING:
            raise ValueError(f"model.generator.upsample must be one of {UPSAMPLING}; got {upsample!r}.")
        self.latent_dim, self.image_size = latent_dim, image_size
        width = {size: int(multiplier * base_width) for size, multiplier in WIDTHS.items()}
        self.init = nn.Sequential(nn.ConvTranspose2d(latent_dim, 2 * width[4], 4, bias=False),
                                  nn.BatchNorm2d(2 * width[4]), GLU())
        sizes = [size for size in WIDTHS if 4 < size <= image_size]
        self.up = nn.ModuleDict({str(size): up_block(width[size // 2], width[size], lite, upsample) for size in sizes})
        self.excite = nn.ModuleDict({str(size): SkipLayerExcitation(width[EXCITATION_SOURCES[size]], width[size])
                                     for size in sizes if size in EXCITATION_SOURCES})
        self.to_rgb = nn.Conv2d(width[image_size], channels, 3, padding=1)
        spectral_normalize(self, (nn.Conv2d, nn.ConvTranspose2d))

    def forward(self, z: Tensor) -> Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        maps = {4: self.init(z.reshape(*z.shape, 1, 1))}
        for size, block in self.up.items():
            x = block(maps[int(size) // 2])
            if size in self.excite:
                x = self.excite[size](maps[EXCITATION_SOURCES[int(size)]], x)
            maps[int(size)] = x
        return torch.tanh(self.to_rgb(maps[self.image_size]))
