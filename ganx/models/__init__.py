"""LightningModules: one per training algorithm. A new variant of an existing algorithm is only a config file."""

from ganx.models.base import AdversarialModule
from ganx.models.conditional import ACGAN, ConditionalGAN
from ganx.models.cyclegan import CycleGAN
from ganx.models.fastgan import FastGAN
from ganx.models.gan import GAN
from ganx.models.pix2pix import Pix2Pix
from ganx.models.stylegan2 import StyleGAN2
from ganx.nonfinite import NonFiniteLossError

__all__ = ["GAN", "ACGAN", "ConditionalGAN", "CycleGAN", "FastGAN", "Pix2Pix", "StyleGAN2", "AdversarialModule", "NonFiniteLossError"]
