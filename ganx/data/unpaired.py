"""Unpaired two-domain image data (``data=unpaired``) in the official CycleGAN layout.

    root/trainA/  root/trainB/  root/testA/  root/testB/     (images, searched recursively; any PIL mode -> RGB)

Batches are ``(real_a, real_b)``, both float32 (N, 3, S, S) in [-1, 1]. Training pairs are unaligned: item i is
A image i (mod |A|) with a B image drawn uniformly at random, so an epoch has max(|A|, |B|) items and visits every
image of the larger domain once (the official ``UnalignedDataset``). Training images are resized to
``load_size`` x ``load_size``, randomly cropped to ``image_size`` and randomly flipped; test images are only resized to
``image_size`` and paired by index (deterministic), as the official test phase does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import transforms

from .base import BatchKind, DataError, ImageDataModule, _check_int, require_folder
from .image_folder import ImageFileDataset, readable_images, skipped_summary

log = logging.getLogger(__name__)

DOMAINS = ("trainA", "trainB", "testA", "testB")


class DomainImages(ImageFileDataset):
    """One domain's files -> (RGB image (3, image_size, image_size) in [-1, 1], 0), with the CycleGAN transforms.

    Resizing ignores the aspect ratio and uses bicubic interpolation, as the official ``resize_and_crop``.
    """

    def __init__(self, files: list[Path], load_size: int, image_size: int, train: bool, flip: bool = True) -> None:
        size = load_size if train else image_size
        super().__init__(files, size)
        steps: list[Any] = [transforms.Resize((size, size), transforms.InterpolationMode.BICUBIC, antialias=True)]
        if train:
            steps.append(transforms.RandomCrop(image_size))
            if flip:
                steps.append(transforms.RandomHorizontalFlip())
        steps += [transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
        self.transform = transforms.Compose(steps)


class UnalignedPairs(Dataset):
    """(A image, B image) pairs over max(|A|, |B|) items.

    ``random_b=True``: item i holds A image i mod |A| and a B image drawn uniformly at random, independently of i
    (the DataLoader shuffles i, so both sides are random). ``random_b=False``: B image i mod |B| (test pairs).
    """

    def __init__(self, domain_a: Dataset, domain_b: Dataset, random_b: bool) -> None:
        self.domain_a, self.domain_b, self.random_b = domain_a, domain_b, random_b
        self.draws_randomly = random_b  # training pairs: the B image, crops and flips (ganx.data.sampling)

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, _ = self.domain_a[index % len(self.domain_a)]
        # torch's RNG, seeded per item by the training loader (SeededDraws).
        b_index = int(torch.randint(len(self.domain_b), ())) if self.random_b else index % len(self.domain_b)
        b, _ = self.domain_b[b_index]
        return a, b


class UnpairedDataModule(ImageDataModule):
    """Unaligned A/B training pairs and index-paired test pairs from ``root/{trainA,trainB,testA,testB}``.

    Args:
        root: the data set folder (e.g. ``data/horse2zebra``; ``python -m ganx.data.download cyclegan NAME``).
        load_size: training images are resized to load_size x load_size before the random crop (official
            ``--load_size``, 286).
        image_size: side of the random training crops and of the resized test images (official ``--crop_size``,
            256).
        flip: random horizontal flips of training images (official ``--no_flip`` is the opposite).
        hint: appended to the "folder not found" error.
        Other args: see ``ImageDataModule``; ``real_dataloader`` yields ``(real_a, real_b)`` pairs.
    """

    channels = 3
    num_classes = None
    batch_kind = BatchKind.UNPAIRED_IMAGES
    transform = "resize_random_crop"

    def __init__(
        self,
        root: str | os.PathLike,
        load_size: int = 286,
        image_size: int = 256,
        flip: bool = True,
        batch_size: int = 1,
        hint: str = "",
        **options,
    ) -> None:
        super().__init__(batch_size=batch_size, val_size=0, image_size=image_size, **options)
        self.load_size = _check_int("load_size", load_size, 1)
        if load_size < image_size:
            raise DataError(
                f"data.load_size={load_size} is smaller than data.image_size={image_size}, the random crop taken from "
                f"it; set load_size >= image_size (the paper: 286 and 256; 72x72 emoji: 72 and 64)"
            )
        self.root = Path(root).expanduser().absolute()
        self.flip = bool(flip)
        self.hint = hint
        self.files: dict[str, list[Path]] = {}
        self.unreadable: list[Path] = []

    def _domain_files(self, name: str) -> list[Path]:
        folder = self.root / name
        layout = f"{self.root}/{{{','.join(DOMAINS)}}}/ (the official CycleGAN layout)"
        if not folder.is_dir():
            raise DataError(f"{folder} not found: data.root must hold the folders {layout}. {self.hint}")
        files = readable_images(folder, self.unreadable)
        if not files:
            raise DataError(f"{folder} holds no readable images; each of {layout} needs at least one")
        return files

    def _build_sets(self) -> tuple[Dataset, Dataset]:
        require_folder(
            self.root,
            f"unpaired data set not found: {self.root}. Point data.root=<folder> at a folder with trainA/ trainB/ "
            f"testA/ testB/, or fetch an official one: python -m ganx.data.download cyclegan horse2zebra. {self.hint}"
        )
        self.files = {name: self._domain_files(name) for name in DOMAINS}
        log.info("%s: %s images", self.root, ", ".join(f"{name} {len(f)}" for name, f in self.files.items()))

        def domain(name: str, train: bool) -> DomainImages:
            return DomainImages(self.files[name], self.load_size, self.image_size, train, self.flip)

        return (
            UnalignedPairs(domain("trainA", True), domain("trainB", True), random_b=True),
            UnalignedPairs(domain("testA", False), domain("testB", False), random_b=False),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "source": "unpaired_folders",
            "root": str(self.root),
            **super().summary(),
            "load_size": self.load_size,
            **{f"{name}_images": len(files) for name, files in self.files.items()},
            **skipped_summary(self.unreadable, (domain for pairs in (self.train_set, self.val_set)
                                                for domain in (pairs.domain_a, pairs.domain_b))),
        }
