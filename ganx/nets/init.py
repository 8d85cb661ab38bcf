"""Weight initialisation schemes from the papers."""

from torch import nn


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init (Radford et al. 2016, Sec. 4): conv/linear weights ~ N(0, 0.02); norm scales ~ N(1, 0.02), shifts 0.

    Use as ``net.apply(init_dcgan_weights)``.
    """
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d | nn.GroupNorm | nn.InstanceNorm2d | nn.LayerNorm):
        if module.weight is not None:
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)
