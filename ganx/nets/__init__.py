"""Plain ``nn.Module`` networks. Nothing here knows about Lightning, losses or optimizers."""

from ganx.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganx.nets.init import init_dcgan_weights
from ganx.nets.mlp import MLPDiscriminator, MLPGenerator
from ganx.nets.patchgan import PatchGANDiscriminator
from ganx.nets.resnet import ResnetGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "PatchGANDiscriminator",
    "ResnetGenerator",
    "init_dcgan_weights",
]
