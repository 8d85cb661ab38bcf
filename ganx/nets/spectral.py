"""Spectral normalisation (Miyato et al. 2018) of a network's weight layers, with torch's parametrization.

Each weight W is used as W / sigma(W), sigma the largest singular value of W reshaped to (out, in * k * k), estimated
by one power iteration per training forward pass (the vectors u, v are buffers, so they are checkpointed). The
parametrization keeps the raw weight as ``<layer>.parametrizations.weight.original``.
"""

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

# Every layer with a weight matrix a critic's Lipschitz constant depends on (the projection embedding too: Miyato &
# Koyama 2018 normalise it as well).
WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def spectral_normalize(module: nn.Module, layers: tuple[type[nn.Module], ...] = WEIGHT_LAYERS) -> nn.Module:
    """Spectrally normalise the weight of every layer of the types ``layers`` inside ``module`` (in place; returned).

    Call it after the weights are initialised: the parametrization then starts from the initialised weights.
    """
    for layer in list(module.modules()):
        if isinstance(layer, layers) and not parametrize.is_parametrized(layer, "weight"):
            spectral_norm(layer)
    return module


def is_spectral_normalized(module: nn.Module) -> bool:
    """True if any layer inside ``module`` has a spectrally normalised weight."""
    return any(
        type(p).__name__ == "_SpectralNorm"
        for m in module.modules() if parametrize.is_parametrized(m, "weight")
        for p in m.parametrizations.weight
    )
