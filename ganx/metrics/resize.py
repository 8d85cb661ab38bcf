"""How images reach the extractor's input size: ``metrics.resize=legacy|clean``, recorded in every protocol.

* ``legacy``: the extractor's own resize, as ganx always did: torchmetrics' antialiased bilinear inside the
  Inception port (299x299), antialiased bilinear for the classifier.
* ``clean``: PIL bicubic with antialiasing on each channel in float mode, before the extractor, as clean-fid
  recommends (Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in GAN Evaluation"): PIL's filter
  widens with the scale factor, so downsampling does not alias. The Inception port takes uint8, so for it the
  resized image is rounded to uint8 once (clean-fid feeds floats); the classifier gets the floats.

Images already at the input size pass unchanged in both modes. Every metric that runs the extractor (``ImageMetrics``,
the class metrics of ``ganx.metrics.conditional``) takes its features through ``resized_features``, so one run's
numbers all share the resize its protocol names.
"""

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ganx.metrics.extractors.base import FeatureExtractor, MetricsSetupError

RESIZE_MODES = ("legacy", "clean")


def clean_resize(images: Tensor, size: int) -> Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, C, size, size) in [-1, 1], PIL bicubic per channel on the [0, 255] scale."""
    if images.shape[-2:] == (size, size):
        return images
    pixels = ((images.detach().float().cpu() + 1) * 127.5).clamp(0, 255).numpy()
    resized = np.stack([
        np.stack([np.asarray(Image.fromarray(channel, mode="F").resize((size, size), Image.BICUBIC)) for channel in image])
        for image in pixels
    ])
    return (torch.from_numpy(resized).to(images.device) / 127.5 - 1).clamp(-1, 1)


def check_resize(extractor: FeatureExtractor, resize: str) -> None:
    """Refuse an unknown mode, and ``clean`` for an extractor that does not state its input size."""
    if resize not in RESIZE_MODES:
        raise MetricsSetupError(f"metrics.resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}.")
    if resize == "clean" and getattr(extractor, "input_size", None) is None:
        raise MetricsSetupError(f"metrics.resize=clean needs the extractor's input size, which {extractor.name} "
                                "does not state; use metrics.resize=legacy.")


def resized_features(extractor: FeatureExtractor, images: Tensor, resize: str) -> Tensor:
    """The extractor's output for images in [-1, 1], after the ``resize`` mode's resizing."""
    if resize == "clean":
        images = clean_resize(images, extractor.input_size)
    return extractor(images)
