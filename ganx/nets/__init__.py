"""Plain ``nn.Module`` networks. Nothing here knows about Lightning, losses or optimizers."""

from ganx.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganx.nets.init import init_dcgan_weights
from ganx.nets.mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "init_dcgan_weights",
]
