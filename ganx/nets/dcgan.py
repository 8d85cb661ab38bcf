"""DCGAN generator and discriminator (Radford et al. 2016) for any resolution 4..7 x 2^n (28, 32, 64, 96, 128, ...).

The 64x64 pair is the well-known anime-faces course architecture: the generator projects z with a Linear layer to
4x4x(8*base_width), then 5x5 stride-2 transposed convs with BatchNorm+ReLU up to 64x64 and tanh; the discriminator
mirrors it with 4x4 stride-2 convs (BatchNorm+LeakyReLU(0.2), none on the first) down to a single logit.

``DCGANGenerator(upsample="nearest"|"bilinear")`` replaces each transposed conv by a 2x upsampling and a 3x3 conv (Odena
et al. 2016, "Deconvolution and Checkerboard Artifacts"). Against a projected discriminator (frozen ImageNet features)
the transposed convs' output lost its dependence on z within 50 steps (one face in every sample), the upsampling ones
did not (experiments/faces_in_minutes).
"""

import torch
from torch import nn

from ganx.errors import ConfigError
from ganx.nets.init import init_dcgan_weights
from ganx.nets.latent import LatentGenerator
from ganx.nets.spectral import spectral_normalize

NORMS = ("batch", "instance", "layer", "spectral", "none")
UPSAMPLING = ("transposed", "nearest", "bilinear")


def dcgan_layout(image_size: int) -> tuple[int, int]:
    """Return (start_size, number of 2x up/downsamplings) with image_size = start_size * 2**n and 4 <= start_size <= 7."""
    size, doublings = image_size, 0
    while size > 7 and size % 2 == 0:
        size, doublings = size // 2, doublings + 1
    if not (4 <= size <= 7) or doublings == 0:
        raise ConfigError(
            f"DCGAN nets need image_size = s * 2**n with 4 <= s <= 7 and n >= 1 (e.g. 28, 32, 64, 96, 128); "
            f"got image_size={image_size}. Set data.image_size to a supported size."
        )
    return size, doublings


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":  # LayerNorm over (C, H, W): the per-sample norm Gulrajani et al. 2017 use for WGAN-GP critics
        return nn.GroupNorm(1, channels)
    if kind in ("spectral", "none"):  # spectral normalises the conv weights instead (DCGANDiscriminator)
        return nn.Identity()
    raise ConfigError(f"norm must be one of {NORMS}, got {kind!r}")


def _up(in_channels: int, out_channels: int, upsample: str, bias: bool) -> list[nn.Module]:
    """A 2x upsampling layer of ``DCGANGenerator``: a transposed conv, or an upsampling and a 3x3 conv."""
    if upsample == "transposed":
        return [nn.ConvTranspose2d(in_channels, out_channels, 5, stride=2, padding=2, output_padding=1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode=upsample), nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)]


class DCGANGenerator(LatentGenerator):
    """z (N, latent_dim) -> images (N, channels, image_size, image_size) in [-1, 1].

    ``spectral_norm=True`` spectrally normalises the linear and conv weights (keeping BatchNorm), as SAGAN
    does for its generator (Zhang et al. 2019, Sec. 4.1: it stabilises G and allows one critic step per G step).
    ``upsample``: transposed (5x5 stride-2 transposed convs, the default) | nearest | bilinear (a 2x upsampling, then
    a 3x3 conv: 1.44x the transposed convs' multiply-adds; see the module's docstring for why).
    """

    def __init__(self, latent_dim: int = 100, image_size: int = 64, channels: int = 3, base_width: int = 64,
                 spectral_norm: bool = False, upsample: str = "transposed"):
        super().__init__()
        if upsample not in UPSAMPLING:
            raise ConfigError(f"model.generator.upsample must be one of {UPSAMPLING}; got {upsample!r}.")
        self.latent_dim = latent_dim
        self.start_size, doublings = dcgan_layout(image_size)
        self.top_width = base_width * 2 ** (doublings - 1)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, self.top_width * self.start_size**2, bias=False),
            nn.BatchNorm1d(self.top_width * self.start_size**2),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        width = self.top_width
        for _ in range(doublings - 1):
            blocks += [*_up(width, width // 2, upsample, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU()]
            width //= 2
        blocks += [*_up(width, channels, upsample, bias=True), nn.Tanh()]
        self.upsample = nn.Sequential(*blocks)
        self.apply(init_dcgan_weights)
        if spectral_norm:
            spectral_normalize(self, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(-1, self.top_width, self.start_size, self.start_size)
        return self.upsample(x)


class DCGANDiscriminator(nn.Module):
    """images (N, channels, image_size, image_size) -> logits (N,). No sigmoid: the loss applies the link function.

    ``norm`` is "batch" for DCGAN, and "layer"/"instance"/"none" for critics with a gradient penalty, whose
    per-sample input gradients BatchNorm would couple across the batch. "spectral" (SN-GAN, Miyato et al. 2018) uses
    no normalisation layer but divides every conv weight by its largest singular value, estimated by one power
    iteration per training forward pass, which bounds the critic's Lipschitz constant by 1.
    """

    def __init__(self, image_size: int = 64, channels: int = 3, base_width: int = 64, norm: str = "batch"):
        super().__init__()
        start_size, doublings = dcgan_layout(image_size)
        layers: list[nn.Module] = [nn.Conv2d(channels, base_width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = base_width
        for _ in range(doublings - 1):
            layers += [
                nn.Conv2d(width, width * 2, 4, stride=2, padding=1, bias=norm in ("spectral", "none")),
                _norm2d(norm, width * 2),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        layers += [nn.Conv2d(width, 1, start_size)]
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)
        if norm == "spectral":
            spectral_normalize(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()
