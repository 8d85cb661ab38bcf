"""Image replay buffer (Shrivastava et al. 2017, Sec. 2.3), as CycleGAN uses it (Zhu et al. 2017, Sec. 4).

The discriminator is updated on a history of generated images rather than only the latest ones, which reduces model
oscillation. The stored images are part of the module's state dict (``get_extra_state``), so they are saved in and
restored from Lightning checkpoints, and survive a resume.
"""

from typing import Any

import torch
from torch import Tensor, nn

from ganx.errors import ConfigError


class ReplayBuffer(nn.Module):
    """Keeps up to ``capacity`` generated images; ``buffer(images)`` returns a batch to train the discriminator on.

    While filling, every new image is stored and returned. Once full, each new image is, with probability 1/2,
    returned as is; otherwise it replaces a uniformly chosen stored image, and that stored image is returned instead
    (the official ``ImagePool.query``). ``capacity=0`` returns the images unchanged.
    """

    def __init__(self, capacity: int = 50):
        super().__init__()
        if capacity < 0:
            raise ConfigError(f"model.replay_buffer_size must be >= 0 (0 disables the buffer), got {capacity}.")
        self.capacity = capacity
        # Grows image by image up to (capacity, C, H, W); plain tensor state, so weights_only checkpoints load it.
        self.register_buffer("images", torch.empty(0), persistent=False)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if self.capacity == 0:
            return images
        images = images.detach()
        if len(self) and self.images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"the replay buffer holds images of shape {tuple(self.images.shape[1:])}, got {tuple(images.shape[1:])}; "
                "a resumed run must keep the image size (data.image_size) of the run it resumes"
            )
        self.images = self.images.to(images)
        returned = []
        for image in images:
            if len(self) < self.capacity:
                self.images = torch.cat([self.images, image.unsqueeze(0)]) if len(self) else image.unsqueeze(0).clone()
                returned.append(image)
            elif torch.rand(()) < 0.5:
                slot = int(torch.randint(self.capacity, ()))
                returned.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                returned.append(image)
        return torch.stack(returned)

    def get_extra_state(self) -> dict[str, Any]:
        return {"images": self.images.detach().cpu()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        images = state["images"]
        if len(images) > self.capacity:
            raise ValueError(
                f"the checkpoint's replay buffer holds {len(images)} images, more than replay_buffer_size={self.capacity}"
            )
        self.images = images.to(self.images.device)
