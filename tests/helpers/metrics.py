"""Stand-ins for the metrics tests: feature extractors whose features are known (a table read from the input, a fixed
random projection), synthetic features, the metrics config as ganx.train composes it, a tiny MNIST-sized GAN, and a
recipe for a domain extractor small enough to train in a test."""

import math
from functools import partial

import torch
from omegaconf import OmegaConf
from torch import Tensor

from ganx.losses import AdversarialLoss
from ganx.metrics import FeatureExtractor, MetricsSetupError
from ganx.models import GAN
from ganx.nets import MLPDiscriminator, MLPGenerator

from .runs import REPO


class TableFeatures(FeatureExtractor):
    """Reads features straight from the input: an "image" (N, 1, 1, P + K) holds P pooled features and K logits."""

    name = "table"
    info: dict = {}

    def __init__(self, pool_dim: int, num_logits: int):
        super().__init__()
        self.pool_dim, self.num_logits = pool_dim, num_logits

    def forward(self, images: Tensor) -> Tensor:
        return images.flatten(1).float()


class ProjectionFeatures(FeatureExtractor):
    """A fixed random projection of the pixels: a cheap stand-in for a network."""

    name = "projection"
    info: dict = {}

    def __init__(self, in_dim: int, pool_dim: int = 6, num_logits: int = 4, seed: int = 0):
        super().__init__()
        self.pool_dim, self.num_logits = pool_dim, num_logits
        weight = torch.randn(in_dim, pool_dim + num_logits, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("weight", weight / math.sqrt(in_dim))

    def forward(self, images: Tensor) -> Tensor:
        return images.flatten(1).float() @ self.weight


def as_images(features: Tensor) -> Tensor:
    return features.view(len(features), 1, 1, -1)


def features(n: int, dim: int, seed: int, shift: float = 0.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g) / math.sqrt(dim)
    return torch.randn(n, dim, generator=g) @ mixing + shift


def metrics_cfg(**overrides):
    cfg = OmegaConf.load(REPO / "conf" / "metrics" / "default.yaml")
    del cfg["defaults"]  # the callbacks entry it adds to a training config
    return OmegaConf.merge(cfg, overrides)


def tiny_gan_28() -> GAN:
    """A GAN of MNIST's shape (1, 28, 28)."""
    return GAN(
        generator=MLPGenerator(latent_dim=8, out_shape=(1, 28, 28), hidden=(16,)),
        discriminator=MLPDiscriminator(in_shape=(1, 28, 28), hidden=(16,), dropout=0.0),
        loss=AdversarialLoss("non_saturating"),
        g_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
        d_optimizer=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
        latent_dim=8,
        num_fixed_samples=4,
    )


# A domain extractor's recipe small enough to train in a test (ganx.metrics.extractors.domain.DomainRecipe fields).
TINY = {"images": 32, "steps": 2, "batch_size": 8, "width": 4, "feature_dim": 8, "input_size": 16}


def inception_unavailable(*args, **kwargs):
    raise MetricsSetupError("FID/IS/KID with Inception-v3 need its weights (offline). Fixes: ...")

