"""Fully connected generator and discriminator (Goodfellow et al. 2014; also the 2-D toy benchmarks)."""

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from ganx.errors import ConfigError
from ganx.nets.latent import LatentGenerator
from ganx.nets.spectral import spectral_normalize


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al. 2013): the max over ``pieces`` linear maps, as in the original GAN's discriminator."""

    def __init__(self, in_features: int, out_features: int, pieces: int):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.out_features, self.pieces).amax(dim=-1)


class MLPGenerator(LatentGenerator):
    """z -> hidden ReLU layers -> an output of ``out_shape`` (tanh for images in [-1, 1], identity for points)."""

    def __init__(
        self,
        latent_dim: int,
        out_shape: Sequence[int],
        hidden: Sequence[int] = (1200, 1200),
        batch_norm: bool = False,
        out_activation: str = "tanh",
    ):
        super().__init__()
        if out_activation not in ("tanh", "none"):
            raise ConfigError(f"out_activation must be 'tanh' or 'none', got {out_activation!r}")
        self.latent_dim, self.out_shape = latent_dim, tuple(out_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h)]
            if batch_norm:
                layers += [nn.BatchNorm1d(h)]
            layers += [nn.ReLU()]
            width = h
        layers += [nn.Linear(width, prod(self.out_shape))]
        if out_activation == "tanh":
            layers += [nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    """x -> hidden layers (LeakyReLU or maxout, with dropout) -> one logit per sample.

    ``maxout_pieces > 1`` gives the original GAN's maxout discriminator; 0 or 1 uses LeakyReLU(0.2).
    ``norm="layer"`` adds a LayerNorm after each hidden layer: it normalises each sample on its own, so unlike
    BatchNorm it keeps the per-sample input gradients a gradient penalty constrains (Gulrajani et al. 2017, Sec. 4).
    ``norm="spectral"`` divides every weight matrix (maxout pieces included) by its largest singular value instead
    (Miyato et al. 2018).
    ``pack=m`` is PacGAN's packing (Lin et al. 2018, Sec. 3): D judges m samples at once, concatenated into one input,
    so a batch of N samples (all real or all generated) gives N / m logits. A generator that drops modes makes packs
    of near-identical samples, which real packs rarely are, so D can tell them apart. N must be a multiple of m.
    Returns logits (no sigmoid): the losses apply the link function, which is numerically stable.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden: Sequence[int] = (240, 240),
        dropout: float = 0.5,
        maxout_pieces: int = 0,
        norm: str = "none",
        pack: int = 1,
    ):
        super().__init__()
        if norm not in ("none", "layer", "spectral"):
            raise ConfigError(f"norm must be 'none' or 'layer' (per-sample norms) or 'spectral', got {norm!r}")
        if not isinstance(pack, int) or pack < 1:
            raise ConfigError(f"pack must be an integer >= 1 (samples per discriminator input; 1: no packing), got {pack!r}")
        self.pack = pack
        layers: list[nn.Module] = [nn.Flatten()]  # a no-op after forward's reshape; kept so checkpoint keys stay
        width = pack * prod(in_shape)
        for h in hidden:
            if maxout_pieces > 1:
                layers += [Maxout(width, h, maxout_pieces)]
            else:
                layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            if norm == "layer":
                layers += [nn.LayerNorm(h)]
            if dropout > 0:
                layers += [nn.Dropout(dropout)]
            width = h
        layers += [nn.Linear(width, 1)]
        self.net = nn.Sequential(*layers)
        if norm == "spectral":
            spectral_normalize(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.pack:
            raise ConfigError(f"A batch of {x.shape[0]} samples cannot be packed {self.pack} at a time (model.discriminator"
                              f".pack={self.pack}); use a data.batch_size that is a multiple of {self.pack}.")
        # Consecutive samples form a pack: they are independent draws, so any grouping is a valid pack.
        return self.net(x.reshape(x.shape[0] // self.pack, -1)).squeeze(1)
