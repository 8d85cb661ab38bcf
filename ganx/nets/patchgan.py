"""PatchGAN discriminator (Isola et al. 2017, Sec. 3.2.2; the 70x70 one CycleGAN uses, Zhu et al. 2017 Sec. 4).

It classifies every overlapping 70x70 patch as real or fake: the output is a grid of logits, one per patch, which the
adversarial losses average. C64-C128-C256-C512 (4x4 convs, LeakyReLU 0.2, no norm on the first layer; the first three
stride 2, C512 stride 1), then a 4x4 stride-1 conv to one channel. With ndf=64, n_layers=3 it has the 2,764,737
parameters of the official ``basic`` discriminator.
"""

import torch
from torch import nn

from ganx.errors import ConfigError
from ganx.nets.init import init_dcgan_weights
from ganx.nets.resnet import conv_bias, image_norm
from ganx.nets.spectral import spectral_normalize


class PatchGANDiscriminator(nn.Module):
    """Images (N, in_channels, H, W) -> logits (N, 1, H', W'), H' = H/8 - 2 for n_layers=3 (30x30 at 256, 6x6 at 64).

    Args:
        ndf: width of the first layer; doubles per layer up to 8 * ndf (official ``--ndf``).
        n_layers: stride-2 conv layers; 3 gives the 70x70 receptive field (official ``--n_layers_D``).
        norm: instance | batch | spectral | none. spectral: no normalisation layers, every conv weight divided by
            its largest singular value (Miyato et al. 2018).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        if n_layers < 1 or ndf < 1:
            raise ConfigError(f"PatchGANDiscriminator needs ndf >= 1 and n_layers >= 1, got ndf={ndf}, n_layers={n_layers}")
        spectral = norm == "spectral"
        norm = "none" if spectral else norm
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1  # the last hidden layer keeps the resolution (C512 is stride 1)
            next_width = ndf * min(2**n, 8)
            layers += [
                nn.Conv2d(width, next_width, 4, stride=stride, padding=1, bias=bias),
                image_norm(norm, next_width),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)
        if spectral:
            spectral_normalize(self.net)
        # Each 4x4 stride-1 conv removes one pixel: >= 3 pixels after the strided convs leave a grid of >= 1 logit and
        # more than one pixel for the last norm layer.
        self.n_layers, self.min_size = n_layers, 3 * 2**n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_size:
            h, w = x.shape[-2:]
            raise ConfigError(
                f"PatchGANDiscriminator input is {h}x{w}; with n_layers={self.n_layers} it needs at least "
                f"{self.min_size}x{self.min_size}. Use a larger data.image_size or fewer model.discriminator_a.n_layers."
            )
        return self.net(x)
