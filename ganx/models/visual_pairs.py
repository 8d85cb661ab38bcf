"""The fixed image pairs the image-to-image models show in ``visualize()`` (pix2pix, CycleGAN)."""

from typing import Any

import torch
from torch import Tensor

from ganx.errors import ConfigError


class VisualPairs:
    """Mixin of a translation model (``class Pix2Pix(VisualPairs, AdversarialModule)``): ``num_visual`` image pairs in
    two buffers, the first pairs of the data module's held-out split (``val_set``), taken at fit start, or without one
    the first training batch's. Not saved in checkpoints: the data defines them."""

    def register_visual_pairs(self, first: str, second: str, num_visual: int) -> None:
        """Call in ``__init__``: the pairs are kept in the buffers named ``first`` and ``second``."""
        if num_visual < 1:
            raise ConfigError(f"model.num_visual must be >= 1 image pair, got {num_visual}.")
        self.num_visual, self._visual_pair_names = num_visual, (first, second)
        for name in self._visual_pair_names:
            self.register_buffer(name, torch.empty(0), persistent=False)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        held_out = getattr(getattr(self.trainer, "datamodule", None), "val_set", None)
        if held_out is not None and len(held_out):
            pairs = [held_out[i] for i in range(min(self.num_visual, len(held_out)))]
            self._set_visual_pairs(torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs]))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if not len(getattr(self, self._visual_pair_names[0])):  # trained without a data module
            self._set_visual_pairs(batch[0][: self.num_visual].detach().clone(),
                                   batch[1][: self.num_visual].detach().clone())

    def _set_visual_pairs(self, first: Tensor, second: Tensor) -> None:
        for name, images in zip(self._visual_pair_names, (first, second), strict=True):
            setattr(self, name, images.to(self.device))
