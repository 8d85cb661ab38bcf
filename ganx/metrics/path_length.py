"""Perceptual path length (Karras et al. 2019, StyleGAN eq. 3) of an unconditional ganx generator, by torchmetrics.

PPL is the mean LPIPS distance between images generated at latent points t and t + epsilon on the line between two
random codes, divided by epsilon^2 (the 1% and 99% quantiles discarded). torchmetrics' LPIPS runs on VGG-16 with
torchvision's ImageNet weights, which torchvision downloads on first use; offline without them this module refuses
with the file and the fix instead of failing deep inside torchvision.
"""

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganx.metrics.extractors.base import MetricsSetupError, hub_weights
from ganx.metrics.registry import EvaluationSetup, register_metric


class ImagesIn0To255(nn.Module):
    """A ganx model as torchmetrics' PPL expects a generator: ``sample(n)`` draws codes, ``forward(z)`` returns
    3-channel images in [0, 255] (grayscale repeated)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def sample(self, num_samples: int) -> Tensor:
        return self.model.sample_latent(num_samples, torch.Generator(self.model.device).manual_seed(0))

    def forward(self, z: Tensor) -> Tensor:
        images = (self.model.generate(z).float() + 1) * 127.5
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def vgg_weights_file() -> Path:
    """Where torchvision keeps the VGG-16 weights LPIPS loads (torch hub's checkpoint folder)."""
    from torchvision.models import VGG16_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_Weights.IMAGENET1K_V1.url).name


def require_lpips_weights() -> None:
    """Refuse with the fix when the VGG-16 weights are absent and cannot be downloaded."""
    from torchvision.models import VGG16_Weights

    path, url = vgg_weights_file(), VGG16_Weights.IMAGENET1K_V1.url
    hub_weights(url, path, lambda why: (
        f"the perceptual path length needs LPIPS's VGG-16 weights, which are not at {path} and could not be "
        f"downloaded ({why}). On a machine with internet download {url} (~528 MB) and copy "
        f"it to {path} (or $TORCH_HOME/hub/checkpoints/), or leave ppl out of metrics."
    ))


def perceptual_path_length(model: Any, num_samples: int, device: torch.device) -> dict[str, float]:
    """PPL of ``model`` (a ganx GAN with ``sample_latent`` and ``generate``) over ``num_samples`` latent pairs."""
    if not hasattr(model, "sample_latent") or getattr(model, "num_classes", None):
        raise MetricsSetupError(f"ppl applies to unconditional latent-variable generators, not {type(model).__name__}.")
    require_lpips_weights()
    from torchmetrics.functional.image.perceptual_path_length import perceptual_path_length as torchmetrics_ppl

    mean, std, _ = torchmetrics_ppl(ImagesIn0To255(model), num_samples=num_samples, device=device)
    return {"ppl": float(mean), "ppl_std": float(std), "num_samples": num_samples, "sim_net": "lpips-vgg16"}


@register_metric("ppl")
class PathLengthMetric:
    """``perceptual_path_length`` in ``ganx.evaluate`` (record entry ``ppl``, over ``ppl_samples`` latent pairs)."""

    def __init__(self, names: list[str], setup: EvaluationSetup):
        self.model, self.num_samples, self.device = setup.model, setup.cfg.ppl_samples, setup.device

    def update(self, real: Tensor, fake: Tensor, batch) -> None:
        pass  # PPL draws its own latent pairs, unrelated to the held-out images

    def compute(self) -> dict[str, Any]:
        return {"ppl": perceptual_path_length(self.model, self.num_samples, self.device)}
