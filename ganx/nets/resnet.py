"""ResNet image-to-image generator of CycleGAN (Zhu et al. 2017, Appendix 7.2), after Johnson et al. 2016.

c7s1-ngf, d(2 ngf), d(4 ngf), R(4 ngf) x n_blocks, u(2 ngf), u(ngf), c7s1-3: reflection padding instead of zero
padding (fewer border artifacts), InstanceNorm without affine parameters and biased convolutions, as the official
``resnet_9blocks`` / ``resnet_6blocks`` networks; with ngf=64 and 9 blocks it has the same 11,378,179 parameters.
"""

import torch
from torch import nn

from ganx.errors import ConfigError
from ganx.nets.init import init_dcgan_weights

NORMS = ("instance", "batch", "none")


def image_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation layers of the pix2pix/CycleGAN nets: InstanceNorm there has no affine parameters and no
    running statistics (the official ``--norm instance``), so it behaves the same in train and eval mode."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm must be one of {NORMS}, got {kind!r}")


def conv_bias(norm: str) -> bool:
    """A bias before BatchNorm is cancelled by its mean subtraction; before affine-free InstanceNorm the official
    code keeps it (and counts it)."""
    return norm != "batch"


def reflect_conv(in_channels: int, out_channels: int, kernel: int, norm: str, relu: bool = True) -> list[nn.Module]:
    """Reflection padding, a size-preserving conv, norm (and ReLU)."""
    layers = [
        nn.ReflectionPad2d(kernel // 2),
        nn.Conv2d(in_channels, out_channels, kernel, bias=conv_bias(norm)),
        image_norm(norm, out_channels),
    ]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, norm, ReLU, (dropout), pad, conv3x3, norm](x) with reflection padding."""

    def __init__(self, channels: int, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        layers = reflect_conv(channels, channels, 3, norm)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += reflect_conv(channels, channels, 3, norm, relu=False)
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """Image (N, in_channels, H, W) -> image (N, out_channels, H, W) in [-1, 1]; H and W must be multiples of 4.

    Fully convolutional: one trained generator translates any image size (``ganx.translate`` pads other sizes).

    Args:
        ngf: width of the first layer; the residual blocks work at 4 * ngf channels (official ``--ngf``).
        n_blocks: residual blocks at 1/4 resolution: 6 for 128x128 training images, 9 for 256x256 (paper, Sec. 4).
        norm: instance | batch | none.
        dropout: dropout inside each residual block (the official ``--no_dropout`` is on for CycleGAN: 0).
    """

    downsamplings = 2

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_blocks < 0 or ngf < 1:
            raise ConfigError(f"ResnetGenerator needs ngf >= 1 and n_blocks >= 0, got ngf={ngf}, n_blocks={n_blocks}")
        bias = conv_bias(norm)
        layers = reflect_conv(in_channels, ngf, 7, norm)
        width = ngf
        for _ in range(self.downsamplings):
            layers += [
                nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=bias),
                image_norm(norm, width * 2),
                nn.ReLU(inplace=True),
            ]
            width *= 2
        layers += [ResnetBlock(width, norm, dropout) for _ in range(n_blocks)]
        for _ in range(self.downsamplings):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                image_norm(norm, width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        # The official init_type=normal, init_gain=0.02 is the DCGAN scheme.
        self.apply(init_dcgan_weights)

    @property
    def size_multiple(self) -> int:
        return 2**self.downsamplings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(
                f"ResnetGenerator input is {h}x{w}; height and width must be multiples of {self.size_multiple} so the "
                f"output has the input's size. Pad the image first (ganx.translate pads and crops back)."
            )
        return self.net(x)
