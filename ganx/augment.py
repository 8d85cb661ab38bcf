"""Differentiable augmentations of the images the discriminator sees (``augment=diffaug`` / ``augment=ada``).

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same random,
differentiable transforms T are applied to real and fake images in every discriminator step and to the fakes in the
generator step, so D is trained as D(T(x)) on both and the generator's gradient flows back through T (augmenting reals
only would teach G to produce augmented images, Sec. 3). The ops and their ranges are the paper's code's (images in
[-1, 1]): ``color`` = brightness (+U(-0.5, 0.5)), saturation (x U(0, 2)) and contrast (x U(0.5, 1.5)); ``translation``
by up to 1/8 of the image size with zero padding; ``cutout`` of a square half the image size. Every image draws its
own parameters (one shared draw per batch would only shift the batch as a whole).

ADA's adaptive probability (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data", Sec. 3):
``AdaptiveDiffAugment`` applies each op to each image with probability p, starting at 0, and every ``interval``
discriminator steps moves p by sign(r_t - target) * images / (speed_kimg * 1000), where r_t = E[sign(D(x_real))] over
those steps: p can go from 0 to 1 in ``speed_kimg`` thousand real images (500k in the paper), target 0.6.

The transforms draw from torch's global RNG, the training stream a checkpoint saves and restores.
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ganx.errors import ConfigError


def _per_image(x: Tensor) -> Tensor:
    """One U(0, 1) value per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def brightness(x: Tensor) -> Tensor:
    return x + (_per_image(x) - 0.5)


def saturation(x: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_per_image(x) * 2) + mean


def contrast(x: Tensor) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_image(x) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by its own integer offset of up to ``ratio`` of its size; zeros fill the uncovered border."""
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n, 1, 1), device=x.device)
    batch, rows, cols = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                       torch.arange(w, device=x.device), indexing="ij")
    rows = (rows + dy + 1).clamp(0, h + 1)  # indices into the image padded by one zero pixel on each side
    cols = (cols + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a square of ``ratio`` times the image size at a random centre of each image (clipped at the border)."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - size_y % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - size_x % 2), (n, 1, 1), device=x.device)
    batch, rows, cols = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(size_y, device=x.device),
                                       torch.arange(size_x, device=x.device), indexing="ij")
    rows = (rows + cy - size_y // 2).clamp(0, h - 1)
    cols = (cols + cx - size_x // 2).clamp(0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[batch, rows, cols] = 0
    return x * mask.unsqueeze(1)


class DiffAugment:
    """The transforms of ``policy`` (a list of "color", "translation", "cutout"), applied in that order to every
    image (``p=1``) or to each image with probability ``p``; an empty policy changes nothing and draws no random
    numbers (``augment=none``: training is exactly as without augmentation)."""

    def __init__(self, policy: Sequence[str] = ("color", "translation", "cutout"), translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5, p: float = 1.0):
        ops: dict[str, tuple[Callable[[Tensor], Tensor], ...]] = {
            "color": (brightness, saturation, contrast),
            "translation": (lambda x: translation(x, translation_ratio),),
            "cutout": (lambda x: cutout(x, cutout_ratio),),
        }
        unknown = [name for name in policy if name not in ops]
        if unknown:
            raise ConfigError(f"augment.policy: unknown transform(s) {unknown}; choose from {list(ops)}, "
                              "e.g. augment.policy=[color,translation,cutout].")
        if not 0 <= p <= 1:
            raise ConfigError(f"augment.p must be a probability in [0, 1], got {p}.")
        self.policy, self.p = list(policy), float(p)
        self.ops = [op for name in self.policy for op in ops[name]]

    @property
    def enabled(self) -> bool:
        return bool(self.ops)

    def __call__(self, images: Tensor) -> Tensor:
        if not self.ops or self.p == 0:
            return images
        if images.dim() != 4:
            raise ConfigError(f"augment={self.policy} transforms images (N, C, H, W), but got a batch of shape "
                              f"{tuple(images.shape)} (2-D points?); train it with augment=none.")
        for op in self.ops:
            if self.p == 1:
                images = op(images)
            else:  # ADA: each image takes each transform with probability p
                chosen = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < self.p
                images = torch.where(chosen, op(images), images)
        return images

    # --- what the adaptive variant changes: the training loop calls these for every augmentation pipeline --------

    def observe(self, real_signs: Tensor, images: int) -> None:
        """Take E[sign(D(x_real))] of one discriminator step on ``images`` real images (all ranks together)."""

    def stats(self) -> dict[str, float]:
        """Values logged under ``train/`` (the adaptive p)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class AdaptiveDiffAugment(DiffAugment):
    """DiffAugment's transforms with ADA's adaptive probability p (see the module docstring); p and the statistic
    being accumulated are saved in checkpoints, so a resumed run continues with the same p."""

    def __init__(self, policy: Sequence[str] = ("color", "translation", "cutout"), translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5, p: float = 0.0, target: float = 0.6, interval: int = 4,
                 speed_kimg: float = 500.0):
        super().__init__(policy, translation_ratio, cutout_ratio, p)
        if interval < 1 or speed_kimg <= 0 or not 0 <= target <= 1:
            raise ConfigError(f"augment: interval must be >= 1, speed_kimg > 0 and target in [0, 1]; got "
                              f"interval={interval}, speed_kimg={speed_kimg}, target={target}.")
        self.target, self.interval, self.speed_kimg = target, interval, speed_kimg
        self.signs: list[Tensor] = []  # E[sign(D(x_real))] of the discriminator steps since the last adjustment
        self.images = 0

    def observe(self, real_signs: Tensor, images: int) -> None:
        self.signs.append(real_signs.detach().float().reshape(()))
        self.images += images
        if len(self.signs) < self.interval:
            return
        r_t = torch.stack([s.to(real_signs.device) for s in self.signs]).mean()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank must take the same step, or the ranks' p would drift apart.
            torch.distributed.all_reduce(r_t)
            r_t /= torch.distributed.get_world_size()
        step = self.images / (self.speed_kimg * 1000)
        direction = (r_t.item() > self.target) - (r_t.item() < self.target)  # sign(r_t - target)
        self.p = min(max(self.p + direction * step, 0.0), 1.0)
        self.signs, self.images = [], 0

    def stats(self) -> dict[str, float]:
        return {"augment_p": self.p}

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "signs": [s.cpu() for s in self.signs], "images": self.images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p, self.images = float(state["p"]), int(state["images"])
        self.signs = list(state["signs"])
