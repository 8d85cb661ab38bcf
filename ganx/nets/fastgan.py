"""FastGAN's networks (Liu et al. 2021, "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image
Synthesis") for 32..256 px: the generator as Projected GAN trains it (Sauer et al. 2021,
``pg_modules/networks_fastgan.py``), and FastGAN's own self-supervised discriminator (``FastGANDiscriminator``, below).

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
import torch.nn.functional as F
from torch import Tensor, nn

from ganx.errors import ConfigError
from ganx.nets.latent import LatentGenerator
from ganx.nets.spectral import spectral_normalize

# Width multipliers of base_width per resolution (FastGAN's nfc_multi).
WIDTHS = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}
# Skip-layer excitation: the map at key is gated by the map at value.
EXCITATION_SOURCES = {64: 4, 128: 8, 256: 16}
UPSAMPLING = ("nearest", "bilinear")
IMAGE_SIZES = (32, 64, 128, 256)


def check_image_size(network: str, image_size: int) -> None:
    if image_size not in IMAGE_SIZES:
        raise ConfigError(f"{network} is built for 32, 64, 128 or 256 px images; got image_size={image_size}. "
                          "Set data.image_size to one of them.")


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
        check_image_size("FastGANGenerator", image_size)
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


# --- the discriminator ------------------------------------------------------------------------------------------------
#
# FastGAN's D (official code, ``models.py``) for 256..1024 px brings the image to a 256 px map and halves it five times
# to 8 px; each map's width is fixed by its resolution (256 px: ndf / 4 channels, ..., 8 px: 8 ndf). Scaled down by
# entering that pyramid at the image's own resolution: a 32..256 px image gets a 3x3 stride-1 stem at image_size (as
# the reference's 256 px D) and the reference's layers from there to 8 px, so at 256 px this is the reference and a
# 64 px D is its last three levels. The small-image branch sees the image at half size (the reference: 128 px, half
# of its 256 px D's input), its decoders reconstruct at half size (the reference: 128 px), and a skip-layer
# excitation is kept where its 8x larger source map exists (all three at 256 px, none at 32 px).

# Widths of D's maps as multiples of base_width (ndf), by the map's resolution (FastGAN's nfc, read per map); the
# small-image branch has half of these.
D_WIDTHS = {256: 0.25, 128: 0.5, 64: 1, 32: 2, 16: 4, 8: 8}
# Skip-layer excitation in D: the map at key is gated by the map at value (FastGAN's se_2_16, se_4_32, se_8_64).
D_EXCITATION_SOURCES = {32: 256, 16: 128, 8: 64}
# The decoders' up-block widths as multiples of decoder_width (FastGAN's SimpleDecoder: 32 whatever ndf), by the
# resolution each up-block makes.
DECODER_WIDTHS = {16: 4, 32: 2, 64: 2, 128: 1}
# The quarters of an image (and of D's 16 px map) the quarter decoder reconstructs: FastGAN's ``part``.
QUARTERS = ("top left", "top right", "bottom left", "bottom right")


def down_block(in_width: int, out_width: int) -> nn.Sequential:
    """4x4 stride-2 conv, BatchNorm, LeakyReLU(0.2): FastGAN's DownBlock (the small-image branch)."""
    return nn.Sequential(nn.Conv2d(in_width, out_width, 4, 2, 1, bias=False), nn.BatchNorm2d(out_width),
                         nn.LeakyReLU(0.2))


class ResidualDownBlock(nn.Module):
    """FastGAN's DownBlockComp: the mean of [4x4 stride-2 conv, BN, LeakyReLU, 3x3 conv, BN, LeakyReLU] and a shortcut
    [2x2 average pool, 1x1 conv, BN, LeakyReLU]."""

    def __init__(self, in_width: int, out_width: int):
        super().__init__()
        self.main = nn.Sequential(down_block(in_width, out_width),
                                  nn.Conv2d(out_width, out_width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_width), nn.LeakyReLU(0.2))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(in_width, out_width, 1, bias=False),
                                      nn.BatchNorm2d(out_width), nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        return (self.main(x) + self.shortcut(x)) / 2


def decoder(in_width: int, out_size: int, channels: int, width: int) -> nn.Sequential:
    """FastGAN's SimpleDecoder: features average-pooled to 8x8 -> up-blocks (nearest 2x, 3x3 conv, BN, GLU) to
    out_size -> 3x3 conv -> tanh: an image in [-1, 1]."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(8)]
    size = 8
    while size < out_size:
        size *= 2
        layers.append(up_block(in_width, DECODER_WIDTHS[size] * width, lite=True, upsample="nearest"))
        in_width = DECODER_WIDTHS[size] * width
    layers += [nn.Conv2d(in_width, channels, 3, padding=1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def half_size(images: Tensor) -> Tensor:
    """The images at half their size, each pixel the mean of a 2x2 block (the reference resizes with nearest
    neighbours, which aliases; real and fake images are resized alike either way)."""
    return F.avg_pool2d(images, 2)


def crop_quarter(x: Tensor, quarter: int) -> Tensor:
    """The quarter (0..3, ``QUARTERS``) of each image or feature map of x (N, C, H, W)."""
    h, w = x.shape[2] // 2, x.shape[3] // 2
    row, col = divmod(quarter, 2)
    return x[:, :, row * h:(row + 1) * h, col * w:(col + 1) * w]


class FastGANDiscriminator(nn.Module):
    """FastGAN's self-supervised discriminator (Liu et al. 2021, Sec. 3.2): images (N, channels, image_size,
    image_size) -> logits (N, 50), 5x5 from the image and 5x5 from the image at half size; with ``quarter``, also the
    three reconstructions its decoders make of the images it judged.

    Main branch: 3x3 stem -> residual down-blocks to 8 px, skip-layer excitation (Eq. 1) of the 32, 16 and 8 px maps
    by the 256, 128 and 64 px ones -> 1x1 conv (16 ndf), BN, LeakyReLU, 4x4 conv. Small branch: the image at half size
    -> 4x4 stride-2 conv and plain down-blocks to 8 px -> 4x4 conv. Decoders (self-supervision: L_recons), each to an
    image of image_size / 2: from the main branch's 8 px map (the whole image), from one quarter of its 16 px map
    (that quarter of the image, at full resolution) and from the small branch's 8 px map (the whole image). Every conv
    is spectrally normalised, as in the reference; the layers' widths and the decoders are the reference's (at 256 px,
    base_width 64, decoder_width 32 the parameter count is the official 11,526,160); the sizes below 256 px are scaled
    as the comment above ``D_WIDTHS`` says.

    Args:
        image_size: 32, 64, 128 or 256.
        channels: image channels.
        base_width: ndf, the width unit (64 in FastGAN's code).
        decoder_width: the decoders' width unit (32 in FastGAN's code, independent of ndf).
    """

    def __init__(self, image_size: int = 256, channels: int = 3, base_width: int = 64, decoder_width: int = 32):
        super().__init__()
        check_image_size("FastGANDiscriminator", image_size)
        if base_width < 4 or decoder_width < 1:
            raise ConfigError(f"FastGANDiscriminator needs base_width >= 4 (its narrowest maps have base_width / 4 "
                              f"channels) and decoder_width >= 1; got base_width={base_width}, decoder_width="
                              f"{decoder_width}. Set model.discriminator.base_width (64 in FastGAN's code).")
        self.image_size = image_size
        width = {size: int(multiplier * base_width) for size, multiplier in D_WIDTHS.items()}
        small_width = {size: int(multiplier * base_width) // 2 for size, multiplier in D_WIDTHS.items()}
        self.stem = nn.Sequential(nn.Conv2d(channels, width[image_size], 3, padding=1, bias=False), nn.LeakyReLU(0.2))
        self.down = nn.ModuleDict({str(size): ResidualDownBlock(width[2 * size], width[size])
                                   for size in D_WIDTHS if size < image_size})
        self.excite = nn.ModuleDict({str(size): SkipLayerExcitation(width[source], width[size])
                                     for size, source in D_EXCITATION_SOURCES.items() if source <= image_size})
        self.head = nn.Sequential(nn.Conv2d(width[8], 2 * width[8], 1, bias=False), nn.BatchNorm2d(2 * width[8]),
                                  nn.LeakyReLU(0.2), nn.Conv2d(2 * width[8], 1, 4, bias=False))
        first = image_size // 4  # the small branch's first map: its half-size input after one stride-2 conv
        self.small = nn.Sequential(nn.Conv2d(channels, small_width[first], 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
                                   *[down_block(small_width[2 * size], small_width[size])
                                     for size in D_WIDTHS if size < first])
        self.small_head = nn.Conv2d(small_width[8], 1, 4, bias=False)
        out_size = image_size // 2
        self.decode_whole = decoder(width[8], out_size, channels, decoder_width)
        self.decode_quarter = decoder(width[16], out_size, channels, decoder_width)
        self.decode_small = decoder(small_width[8], out_size, channels, decoder_width)
        spectral_normalize(self, (nn.Conv2d,))

    def forward(self, images: Tensor, quarter: int | None = None) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        """Logits (N, 50); with ``quarter`` (0..3: ``QUARTERS``), (logits, (whole, quarter, small)): the decoders'
        reconstructions, whose targets ``reconstruction_targets(images, quarter)`` gives in the same order."""
        maps = {self.image_size: self.stem(images)}
        for size, block in self.down.items():
            x = block(maps[2 * int(size)])
            if size in self.excite:
                x = self.excite[size](maps[D_EXCITATION_SOURCES[int(size)]], x)
            maps[int(size)] = x
        small = self.small(half_size(images))
        logits = torch.cat([self.head(maps[8]).flatten(1), self.small_head(small).flatten(1)], dim=1)
        if quarter is None:
            return logits
        return logits, (self.decode_whole(maps[8]), self.decode_quarter(crop_quarter(maps[16], quarter)),
                        self.decode_small(small))

    @staticmethod
    def reconstruction_targets(images: Tensor, quarter: int) -> tuple[Tensor, Tensor, Tensor]:
        """What the decoders reconstruct from ``images``: the whole image at half size (from the main branch), the
        quarter at full resolution, the whole image at half size again (the small branch's own input)."""
        half = half_size(images)
        return half, crop_quarter(images, quarter), half
