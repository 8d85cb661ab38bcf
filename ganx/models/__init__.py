"""LightningModules: one per training algorithm. A new variant of an existing algorithm is only a config file."""

from ganx.models.base import AdversarialModule, NonFiniteLossError
from ganx.models.cyclegan import CycleGAN
from ganx.models.gan import GAN

__all__ = ["GAN", "CycleGAN", "AdversarialModule", "NonFiniteLossError"]
