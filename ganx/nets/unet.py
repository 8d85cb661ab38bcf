"""The pix2pix U-Net generator (Isola et al. 2017, Sec. 3.2.1 and Appendix 6.1.1), as the official ``unet_256``.

An encoder-decoder of ``num_downs`` 4x4 stride-2 convolutions down to 1x1 and as many transposed convolutions back up,
with a skip connection from every encoder level to the decoder level of the same resolution (the input of each decoder
layer is its predecessor's output concatenated with the mirrored encoder output), so low-level structure such as edge
positions can bypass the bottleneck. Encoder: C64-C128-C256-C512-C512-...; LeakyReLU(0.2); no norm on the first and the
innermost layer. Decoder: ReLU, the ``num_downs - 5`` levels just above the innermost with dropout 0.5 (the generator's
only noise source, Sec. 3.1), tanh output. With ngf=64, num_downs=8, batch norm it has the official 54,413,955
parameters.
"""

import torch
from torch import Tensor, nn

from ganx.errors import ConfigError
from ganx.nets.init import init_dcgan_weights
from ganx.nets.resnet import conv_bias, image_norm


class UNetLevel(nn.Module):
    """One resolution level: down-conv, the inner levels, up-conv; outputs [input, decoded] for the outer level.

    ``outer``/``inner``: channels entering this level and leaving its down-conv. The outermost level maps the image
    channels to ``inner`` and back to ``out_channels`` with tanh and no skip; the innermost has no inner levels.
    """

    def __init__(self, outer: int, inner: int, inner_levels: nn.Module | None, norm: str, dropout: float,
                 outermost: bool = False, out_channels: int | None = None):
        super().__init__()
        bias = conv_bias(norm)
        innermost = inner_levels is None
        down: list[nn.Module] = [nn.Conv2d(outer, inner, 4, stride=2, padding=1, bias=bias)]
        if not outermost:
            down.insert(0, nn.LeakyReLU(0.2, inplace=True))
            if not innermost:
                down.append(image_norm(norm, inner))
        up_in = inner if innermost else 2 * inner  # every level below the innermost returns [input, decoded]
        up: list[nn.Module] = [nn.ReLU(inplace=True)]
        if outermost:
            up += [nn.ConvTranspose2d(up_in, out_channels, 4, stride=2, padding=1), nn.Tanh()]
        else:
            up += [nn.ConvTranspose2d(up_in, outer, 4, stride=2, padding=1, bias=bias), image_norm(norm, outer)]
            if dropout > 0:
                up.append(nn.Dropout(dropout))
        self.outermost = outermost
        self.block = nn.Sequential(*down, *([inner_levels] if inner_levels is not None else []), *up)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x) if self.outermost else torch.cat([x, self.block(x)], dim=1)


class UNetGenerator(nn.Module):
    """Image (N, in_channels, H, W) -> image (N, out_channels, H, W) in [-1, 1]; H, W multiples of 2**num_downs.

    Args:
        num_downs: stride-2 levels; 8 for 256x256 images (down to 1x1), 7 for 128, 6 for 64 (official ``unet_256``,
            ``unet_128``). None: as many as ``image_size`` allows (halving while even), at most 8.
        image_size: the training image side, used only when ``num_downs`` is None.
        ngf: width of the first layer; doubles per level up to 8 * ngf (official ``--ngf``).
        norm: batch (the paper) | instance | none.
        dropout: rate in the decoder levels just above the innermost (0.5 in the paper; 0 turns it off).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int | None = 8, ngf: int = 64,
                 norm: str = "batch", dropout: float = 0.5, image_size: int | None = None):
        super().__init__()
        if num_downs is None:
            if not image_size:
                raise ConfigError("UNetGenerator needs num_downs, or image_size to derive it from")
            num_downs = min(8, (image_size & -image_size).bit_length() - 1)  # how often image_size halves evenly
        if num_downs < 2 or ngf < 1:
            raise ConfigError(f"UNetGenerator needs num_downs >= 2 and ngf >= 1, got num_downs={num_downs}, ngf={ngf}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"UNetGenerator dropout must be in [0, 1), got {dropout}")

        def width(level: int) -> int:  # channels after the down-conv of a level (0 = outermost)
            return ngf * min(2**level, 8)

        levels: nn.Module | None = None
        for level in range(num_downs - 1, 0, -1):  # built from the innermost outwards
            with_dropout = dropout if 4 <= level < num_downs - 1 else 0.0  # the num_downs - 5 levels above the innermost
            levels = UNetLevel(width(level - 1), width(level), levels, norm, with_dropout)
        self.net = UNetLevel(in_channels, width(0), levels, norm, 0.0, outermost=True, out_channels=out_channels)
        self.in_channels, self.out_channels, self.num_downs = in_channels, out_channels, num_downs
        self.size_multiple = 2**num_downs
        self.apply(init_dcgan_weights)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ConfigError(
                f"UNetGenerator input is {h}x{w}; with num_downs={self.num_downs} both sides must be multiples of "
                f"{self.size_multiple}. Set data.image_size to a multiple, or model.generator.num_downs to "
                f"log2 of a power of two that divides it."
            )
        return self.net(x)
