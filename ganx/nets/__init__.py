"""Plain ``nn.Module`` networks. Nothing here knows about Lightning, losses or optimizers."""

from ganx.nets.conditional import (
    AuxiliaryClassifierDiscriminator,
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
)
from ganx.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganx.nets.ensemble import DiscriminatorEnsemble
from ganx.nets.fastgan import FastGANDiscriminator, FastGANGenerator
from ganx.nets.init import init_dcgan_weights
from ganx.nets.mlp import MLPDiscriminator, MLPGenerator
from ganx.nets.patchgan import PatchGANDiscriminator
from ganx.nets.pretrained import EfficientNetLiteFeatures
from ganx.nets.projected import ProjectedDiscriminator
from ganx.nets.resnet import ResnetGenerator
from ganx.nets.sngan import SNGANResNetDiscriminator, SNGANResNetGenerator
from ganx.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from ganx.nets.unet import UNetGenerator

__all__ = [
    "AuxiliaryClassifierDiscriminator",
    "ConditionalDCGANDiscriminator",
    "ConditionalDCGANGenerator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DiscriminatorEnsemble",
    "EfficientNetLiteFeatures",
    "FastGANDiscriminator",
    "FastGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "PatchGANDiscriminator",
    "ProjectedDiscriminator",
    "ResnetGenerator",
    "SNGANResNetDiscriminator",
    "SNGANResNetGenerator",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "UNetGenerator",
    "init_dcgan_weights",
]
