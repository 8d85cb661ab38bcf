"""StyleGAN2 generator and discriminator (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN")
for square images of 32 to 1024 pixels (powers of two).

Generator: z -> pixel norm -> mapping MLP (``mapping_layers`` equalized-lr layers, learning rate x0.01) -> w, broadcast
to one w per layer (``num_ws``; style mixing swaps the tail for another w; truncation pulls the first layers' towards
the mean w) -> synthesis: a learned 4x4 constant, then per
resolution [2x upsampling,] 3x3 *modulated* convolutions with weight demodulation (Sec. 2.2), per-pixel noise with a
learned strength, bias and leaky ReLU, and a 1x1 toRGB whose outputs are summed across resolutions ("skip"
architecture, Sec. 4.1). The generator tracks the mean w (``mapping.w_avg``) for the truncation trick.
Discriminator: a 1x1 fromRGB, residual blocks (two 3x3 convs and a 1x1 shortcut, both scaled by sqrt(1/2), each
halving the resolution; "resnet" architecture, Sec. 4.1), then at 4x4 the minibatch standard deviation (Karras et al.
2018, Sec. 3), a 3x3 conv and two fully connected layers to one logit. Every weight uses the equalized learning rate
(Karras et al. 2018, Sec. 4.1): stored as N(0, 1) and scaled by 1/sqrt(fan_in) at runtime.

Widths: ``min(channel_base // resolution, channel_max)`` per resolution, as in the official code (NVlabs/
stylegan2-ada-pytorch, training/networks.py): channel_base 16384 and channel_max 512 are its ``paper256`` setting
(24,767,458 G and 24,001,089 D parameters at 256x256, the counts of that code's networks; tests/test_stylegan2.py),
32768 its config F (1024x1024).

Resampling differs from the official code, deliberately: upsampling is bilinear (``F.interpolate``) and
downsampling a 2x2 average (a box filter) before the conv, where the official code uses the [1, 3, 3, 1] FIR filter
with transposed / strided convs (custom CUDA ops). Both are low-pass; the FIR filter aliases a little less. The
parameter counts are unaffected (the filter is fixed). Noise inputs draw fresh noise in training mode and use a
fixed per-layer noise image in eval mode (the official ``noise_mode='const'``), so eval-mode samples, grids and metrics
depend on z alone.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganx.errors import ConfigError
from ganx.nets.latent import LatentGenerator
from ganx.nets.minibatch import minibatch_stddev

LRELU_GAIN = math.sqrt(2)  # keeps the activations' scale through leaky ReLU (the official bias_act def_gain)


def check_image_size(image_size: int) -> int:
    """log2 of ``image_size``; refuses sizes the layout is not defined for."""
    if not isinstance(image_size, int) or image_size < 32 or image_size > 1024 or image_size & (image_size - 1):
        raise ConfigError(
            f"StyleGAN2 nets need a power-of-two image size from 32 to 1024, got image_size={image_size}: the "
            "synthesis network doubles the resolution from a 4x4 constant and the discriminator halves it back to "
            "4x4. Set data.image_size=32, 64, 128, 256, 512 or 1024."
        )
    return int(math.log2(image_size))


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over features (the official normalize_2nd_moment of z)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualizedLinear(nn.Module):
    """A fully connected layer with the equalized learning rate: y = x (W * lr_multiplier / sqrt(in))^T + b *
    lr_multiplier, W stored as N(0, 1 / lr_multiplier^2), so Adam's steps on W are scaled by lr_multiplier (0.01 in
    the mapping network, StyleGAN Sec. C); optional leaky ReLU(0.2) x sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False, lr_multiplier: float = 1.0,
                 bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain, self.bias_gain = lr_multiplier / math.sqrt(in_features), lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.activation else x


class EqualizedConv2d(nn.Module):
    """A convolution with the equalized learning rate (weight / sqrt(in * k * k) at runtime), 'same' padding,
    optional 2x2 average pooling before it (``down``), bias, leaky ReLU(0.2) x sqrt(2), and an output ``gain``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = True, down: bool = False, gain: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.activation, self.down, self.gain = activation, down, gain

    def forward(self, x: Tensor) -> Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)
        if self.activation:
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        return x * self.gain if self.gain != 1 else x


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, padding: int = 0,
                     fused: bool = True) -> Tensor:
    """Convolve each sample with its own modulated weights w'_ijk = s_i w_ijk, demodulated to
    w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps) (StyleGAN2 Eqs. 1 and 3).

    x (N, I, H, W), weight (O, I, k, k), styles (N, I). ``fused``: one grouped convolution over the whole batch, the
    batch becoming the channel groups, each with its sample's weights (StyleGAN2 Sec. 2.2). Otherwise the same result
    by scaling the activations: conv(x * s, w) * d, d_j = 1 / sqrt(sum_i s_i^2 sum_k w_ijk^2 + eps), one ordinary
    convolution with shared weights; the official code trains this way, and on a CPU its backward pass is several
    times faster than the grouped one's.
    """
    n, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    if not fused:
        x = F.conv2d(x * styles.reshape(n, in_channels, 1, 1), weight, padding=padding)
        if demodulate:
            norms = styles.square() @ weight.square().sum(dim=(2, 3)).T  # (N, O)
            x = x * (norms + 1e-8).rsqrt().reshape(n, out_channels, 1, 1)
        return x
    weights = weight.unsqueeze(0) * styles.reshape(n, 1, in_channels, 1, 1)  # (N, O, I, k, k)
    if demodulate:
        weights = weights * (weights.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    x = F.conv2d(x.reshape(1, n * in_channels, height, width), weights.reshape(n * out_channels, in_channels, kh, kw),
                 padding=padding, groups=n)
    return x.reshape(n, out_channels, *x.shape[2:])


class MappingNetwork(nn.Module):
    """z (N, latent_dim) -> w (N, w_dim): pixel norm, then ``num_layers`` equalized-lr layers with leaky ReLU.

    In training mode every forward moves the tracked mean ``w_avg`` (a buffer) towards the batch mean:
    w_avg <- w_avg + (1 - w_avg_decay) (mean(w) - w_avg), the centre of the truncation trick
    (``StyleGAN2Generator.truncate``).
    """

    def __init__(self, latent_dim: int, w_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01,
                 w_avg_decay: float = 0.995):
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"StyleGAN2 mapping_layers must be >= 1 (8 in the paper), got {num_layers}.")
        widths = [latent_dim] + [w_dim] * num_layers
        self.layers = nn.Sequential(*(EqualizedLinear(a, b, activation=True, lr_multiplier=lr_multiplier)
                                      for a, b in zip(widths, widths[1:], strict=False)))
        self.w_avg_decay = w_avg_decay
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, track_w_avg: bool = True) -> Tensor:
        w = self.layers(pixel_norm(z))
        if self.training and track_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_decay))
        return w


class SynthesisLayer(nn.Module):
    """[2x bilinear upsampling,] 3x3 modulated conv (style = affine(w), initial bias 1), + strength x noise, + bias,
    leaky ReLU x sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.weight_gain = 1 / math.sqrt(in_channels * 9)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.up, self.resolution = up, resolution

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = modulated_conv2d(x, self.weight * self.weight_gain, self.affine(w), padding=1, fused=not self.training)
        if self.training:
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        x = x + self.noise_strength.to(x.dtype) * noise + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation (its output is the image, not a feature map) + bias."""

    def __init__(self, in_channels: int, channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False,
                             fused=not self.training)
        return x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)


class SynthesisBlock(nn.Module):
    """One resolution: (the 4x4 constant | an upsampling layer), a layer, and a toRGB added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, channels: int):
        super().__init__()
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGB(out_channels, channels, w_dim)
        self.num_conv = 1 if resolution == 4 else 2

    def forward(self, x: Tensor | None, image: Tensor | None, ws: Tensor) -> tuple[Tensor, Tensor]:
        """ws (N, num_conv + 1, w_dim): one w per conv, then the toRGB's (the next block's first conv shares it)."""
        if x is None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, 0])
        x = self.conv1(x, ws[:, self.num_conv - 1])
        rgb = self.torgb(x, ws[:, self.num_conv])
        if image is not None:
            rgb = rgb + F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False)
        return x, rgb


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> images (N, channels, image_size, image_size); num_ws = 2 log2(image_size) - 2, the
    coarse styles first (the 4x4 conv, then two per resolution and the last toRGB)."""

    def __init__(self, w_dim: int, image_size: int, channels: int, channel_base: int, channel_max: int):
        super().__init__()
        log2 = check_image_size(image_size)
        self.resolutions = [2**i for i in range(2, log2 + 1)]
        self.blocks = nn.ModuleList(
            SynthesisBlock(channels_at(r // 2, channel_base, channel_max) if r > 4 else 0,
                           channels_at(r, channel_base, channel_max), w_dim, r, channels)
            for r in self.resolutions
        )
        self.num_ws = 2 * log2 - 2
        self.w_dim = w_dim

    def forward(self, ws: Tensor) -> Tensor:
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"synthesis expects ws of shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}.")
        x = image = None
        first = 0
        for block in self.blocks:
            x, image = block(x, image, ws[:, first:first + block.num_conv + 1])
            first += block.num_conv
        return image


class StyleGAN2Generator(LatentGenerator):
    """z (N, latent_dim) -> images (N, channels, image_size, image_size), roughly in [-1, 1] (no output squashing,
    as the official generator; sample writers clamp).

    Args:
        latent_dim, w_dim: the sizes of z and w (512 in the paper).
        channel_base, channel_max: widths min(channel_base // resolution, channel_max) (16384, 512 at 256x256 in
            the paper; 32768, 512 for config F).
        mapping_layers: depth of the mapping network (8 in the paper).
        mapping_lr_multiplier: learning-rate multiplier of the mapping layers (0.01).
        w_avg_decay: decay of the tracked mean w (0.995).
    """

    def __init__(self, latent_dim: int = 512, w_dim: int = 512, image_size: int = 256, channels: int = 3,
                 channel_base: int = 16384, channel_max: int = 512, mapping_layers: int = 8,
                 mapping_lr_multiplier: float = 0.01, w_avg_decay: float = 0.995):
        super().__init__()
        self.latent_dim = latent_dim
        self.synthesis = SynthesisNetwork(w_dim, image_size, channels, channel_base, channel_max)
        self.mapping = MappingNetwork(latent_dim, w_dim, mapping_layers, mapping_lr_multiplier, w_avg_decay)
        self.num_ws = self.synthesis.num_ws

    def styles(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
               track_w_avg: bool = True) -> Tensor:
        """ws (N, num_ws, w_dim): the mapping of z, the same w for every layer, truncated by ``truncate``."""
        w = self.mapping(z, track_w_avg)
        return self.truncate(w.unsqueeze(1).expand(-1, self.num_ws, -1), truncation_psi, truncation_cutoff)

    def truncate(self, ws: Tensor, psi: float = 1.0, cutoff: int | None = None) -> Tensor:
        """The truncation trick (StyleGAN Sec. 3.2 / Appendix B): w' = w_avg + psi (w - w_avg) for the first
        ``cutoff`` layers (the coarse styles; None: all of them), the official code's ``truncation_cutoff``; the
        later layers keep their w. ws (N, num_ws, w_dim)."""
        if psi == 1:
            return ws
        cutoff = ws.shape[1] if cutoff is None else cutoff
        truncated = self.mapping.w_avg.to(ws.dtype).lerp(ws[:, :cutoff], psi)
        return torch.cat([truncated, ws[:, cutoff:]], dim=1)

    def forward(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> Tensor:
        return self.synthesis(self.styles(z, truncation_psi, truncation_cutoff))

    # --- sampling in W (ganx.sample) ---------------------------------------------------------------------------

    def embed(self, z: Tensor) -> Tensor:
        """w (N, w_dim): StyleGAN2 interpolates in W, which is less entangled than Z (StyleGAN Sec. 4)."""
        return self.mapping(z)

    def render(self, codes: Tensor, labels: Tensor | None = None, truncation: float = 1.0,
               truncation_cutoff: int | None = None) -> Tensor:
        """Images for w (N, w_dim), or per-layer ws (N, num_ws, w_dim) from ``mix``, truncated by ``truncate``."""
        ws = codes if codes.dim() == 3 else codes.unsqueeze(1).expand(-1, self.num_ws, -1)
        return self.synthesis(self.truncate(ws, truncation, truncation_cutoff))

    def mix(self, codes_a: Tensor, codes_b: Tensor, coarse: int) -> Tensor:
        """Style mixing (StyleGAN Sec. 3.1, Fig. 3): ws (len(a) * len(b), num_ws, w_dim), pair (i, j) row-major
        with the first ``coarse`` styles (4 covers 4x4 and 8x8) from a_i and the fine rest from b_j."""
        k_a, k_b = len(codes_a), len(codes_b)
        coarse_ws = codes_a.repeat_interleave(k_b, dim=0).unsqueeze(1).expand(-1, coarse, -1)
        fine_ws = codes_b.repeat(k_a, 1).unsqueeze(1).expand(-1, self.num_ws - coarse, -1)
        return torch.cat([coarse_ws, fine_ws], dim=1)


class DiscriminatorBlock(nn.Module):
    """[fromRGB,] then sqrt(1/2) (shortcut(x) + conv1(conv0(x))): conv0 3x3, conv1 2x2-average then 3x3, shortcut
    2x2-average then 1x1 without bias."""

    def __init__(self, in_channels: int, out_channels: int, channels: int, first: bool):
        super().__init__()
        self.fromrgb = EqualizedConv2d(channels, in_channels, 1) if first else None
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, down=True, gain=math.sqrt(0.5))
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False, activation=False, down=True,
                                    gain=math.sqrt(0.5))

    def forward(self, x: Tensor) -> Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        return self.skip(x) + self.conv1(self.conv0(x))


class StyleGAN2Discriminator(nn.Module):
    """images (N, channels, image_size, image_size) -> logits (N,).

    Args:
        channel_base, channel_max: widths as in the generator.
        mbstd_group_size: samples per group of the minibatch standard deviation (4 by default; 8 in paper256).
        mbstd_channels: feature maps it appends (1).
    """

    def __init__(self, image_size: int = 256, channels: int = 3, channel_base: int = 16384, channel_max: int = 512,
                 mbstd_group_size: int = 4, mbstd_channels: int = 1):
        super().__init__()
        log2 = check_image_size(image_size)
        width = [channels_at(2**i, channel_base, channel_max) for i in range(log2 + 1)]  # by log2 resolution
        self.blocks = nn.Sequential(*(DiscriminatorBlock(width[i], width[i - 1], channels, first=i == log2)
                                      for i in range(log2, 2, -1)))
        top = width[2]
        self.mbstd_group_size, self.mbstd_channels = mbstd_group_size, mbstd_channels
        self.conv = EqualizedConv2d(top + mbstd_channels, top, 3)
        self.fc = EqualizedLinear(top * 16, top, activation=True)
        self.out = EqualizedLinear(top, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = self.blocks(images)
        if self.mbstd_channels:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_channels)
        return self.out(self.fc(self.conv(x).flatten(1))).flatten()
