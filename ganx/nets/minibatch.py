"""The minibatch standard deviation layer (Karras et al. 2018, "Progressive Growing of GANs", Sec. 3): a critic that
sees how much a group of samples varies can tell a collapsed generator's batch from a real one, so collapse costs
the generator. Used at the end of StyleGAN2's discriminator and, optionally, of the projected discriminator's heads."""

import torch
from torch import Tensor, nn

from ganx.errors import ConfigError


def minibatch_stddev(x: Tensor, group_size: int, num_channels: int = 1) -> Tensor:
    """Append ``num_channels`` feature maps holding the standard deviation of the features across a group of
    samples, averaged over features and pixels (Karras et al. 2018, Sec. 3; StyleGAN2's grouped variant).

    Sample i belongs to group i mod (N / G), G = min(group_size, N); the channels are split into ``num_channels``
    parts, each giving one map.
    """
    n, c, h, w = x.shape
    group = min(group_size, n)
    if n % group:
        raise ConfigError(f"The minibatch standard deviation layer splits the batch into groups of "
                          f"mbstd_group_size={group_size}, but got {n} samples; use a batch size that is a multiple of "
                          f"it (data.batch_size), or set model.discriminator.mbstd_group_size.")
    y = x.float().reshape(group, n // group, num_channels, c // num_channels, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (N / G, F)
    y = y.reshape(-1, num_channels, 1, 1).repeat(group, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)



class MinibatchStdDev(nn.Module):
    """``minibatch_stddev`` as a layer: (N, C, H, W) -> (N, C + num_channels, H, W)."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        return minibatch_stddev(x, self.group_size, self.num_channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
