"""Image-folder data module (e.g. ``data=anime``): any nesting, bad files skipped, RGB output; unlabeled, or labeled
by class subfolder (``data.labels=folders``, torchvision's ``ImageFolder`` convention)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from .base import BatchKind, DataError, ImageDataModule, capped_val_size, require_folder, split_indices

log = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# data.labels: none (every image is class 0: unconditional data) or folders (one class per subfolder of data.root).
LABELS = ("none", "folders")
# What PIL raises for unreadable / truncated / hostile files (UnidentifiedImageError is an OSError).
BAD_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB without losing the picture.

    * 16/32-bit integer grayscale ("I;16", "I", ...): PIL's convert() would clip at 255 (nearly all white),
      so scale 0..65535 down to 0..255 instead.
    * Transparency (RGBA, LA, palette with a transparent index): composite on white, since the colour stored
      under fully transparent pixels is arbitrary (often black).
    """
    if im.mode.startswith("I"):
        a = np.asarray(im).astype(np.float64)
        a = np.clip(a / 257.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if (im.mode == "P" and "transparency" in im.info) or im.mode in ("PA", "LA", "La", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def scan_images(root: Path) -> tuple[list[Path], list[Path]]:
    """Sorted image files under ``root`` (recursive), split into (readable, skipped).

    Only the header is read (``Image.open`` is lazy), so this is cheap; truncated files pass here and are
    caught when decoded in ``ImageFileDataset``.
    """
    candidates = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),  # deterministic across file systems
    )
    good, skipped = [], []
    for path in candidates:
        try:
            with Image.open(path) as im:
                ok = im.width > 0 and im.height > 0
        except BAD_IMAGE_ERRORS:
            ok = False
        (good if ok else skipped).append(path)
    return good, skipped


def readable_images(folder: Path, unreadable: list[Path]) -> list[Path]:
    """``scan_images(folder)``'s readable files; the others are logged and added to ``unreadable`` (for the run
    record's ``skipped_files``, ``skipped_summary``)."""
    files, skipped = scan_images(folder)
    if skipped:
        names = ", ".join(str(p.relative_to(folder)) for p in skipped[:5])
        log.warning("%s: skipped %d file(s) that are not readable images (first: %s)", folder, len(skipped), names)
    unreadable.extend(skipped)
    return files


def class_folders(root: Path) -> list[str]:
    """The class names of ``data.labels=folders``: the sorted names of ``root``'s subfolders (hidden ones left out), as
    torchvision's ``ImageFolder`` finds them; [] when ``root`` is not a folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def source_paths(source) -> tuple[Path, ...]:
    """The files of one data set item's source: a file, or a tuple of files (a pair)."""
    return tuple(source) if isinstance(source, tuple) else (source,)


class ImageFileDataset(Dataset):
    """Files -> (RGB image (3, S, S) in [-1, 1], label: ``labels[i]``, or 0 without labels). A file that fails to
    decode is replaced by the next.

    ``files`` may also hold tuples of files, one item each (subclasses that load pairs override ``load``).
    """

    _upscale_noted = False  # one INFO note per process about small images being upscaled

    def __init__(self, files: list[Path], image_size: int, labels: list[int] | None = None) -> None:
        self.files = files
        self.labels = labels
        self.image_size = image_size
        # One flag per item that failed to decode, in shared memory: DataLoader workers decode in processes of their
        # own, and the main process counts their failures for the run record. (A marker in every batch would change
        # the batches the models read; a multiprocessing Manager would add a process and a round trip per item.)
        self.bad = torch.zeros(len(files), dtype=torch.bool).share_memory_()
        self.transform = transforms.Compose(
            [
                transforms.Resize(image_size, antialias=True),  # shorter side -> image_size, keeps aspect ratio
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
                transforms.Normalize([0.5] * 3, [0.5] * 3),  # [0, 1] -> [-1, 1]
            ]
        )

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as im:
            # Lets JPEG decode at 1/2, 1/4 or 1/8 scale when the file is much larger than needed (big speed-up).
            im.draft(None, (self.image_size, self.image_size))
            im.load()  # full decode while the file is open; raises on truncated data
            im = to_rgb(im)
        if min(im.size) < self.image_size and not ImageFileDataset._upscale_noted:
            ImageFileDataset._upscale_noted = True
            log.info(
                "%s is %dx%d, smaller than image_size=%d: small images are upscaled",
                self.files[index],
                *im.size,
                self.image_size,
            )
        return self.transform(im)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.files)
        for k in range(n):
            j = (index + k) % n
            if self.bad[j]:
                continue
            try:
                return self.load(j), 0 if self.labels is None else self.labels[j]
            except BAD_IMAGE_ERRORS as e:
                # Do not crash a long run for one broken file: use the next one (deterministic) instead.
                self.bad[j] = True
                log.warning("skipping undecodable image %s (%s: %s)", self.files[j], type(e).__name__, e)
        folder = os.path.commonpath([path.parent for source in self.files for path in source_paths(source)])
        raise DataError(f"none of the {n} images under {folder} could be decoded (truncated or corrupt files, e.g. "
                        f"{source_paths(self.files[0])[0]}): replace them, or point data.root at a folder of intact "
                        "images")

    def undecodable(self) -> list:
        """The items' sources that failed to decode so far, in any process."""
        return [self.files[i] for i in self.bad.nonzero().flatten().tolist()]


def skipped_summary(unreadable: list[Path], datasets: Iterable[ImageFileDataset]) -> dict[str, Any]:
    """The run record's account of the files left out: ``unreadable`` at the scan (``readable_images``) and those that
    failed to decode in ``datasets`` so far (a pair's files count once, as one item)."""
    undecodable = sorted(" & ".join(map(str, source_paths(s))) for ds in datasets for s in ds.undecodable())
    return {
        "skipped_files": len(unreadable) + len(undecodable),
        "skipped_examples": [str(p) for p in unreadable[:5]] + undecodable[:5],
    }


class ImageFolderDataModule(ImageDataModule):
    """Square RGB crops of every image under ``root``; labels all 0 (unconditional), or with ``labels="folders"`` the
    index of the image's class subfolder of ``root`` (sorted names, as torchvision's ``ImageFolder``).

    Args:
        root: folder of images (searched recursively for .jpg/.jpeg/.png/.webp/.bmp, case-insensitive).
        image_size: output side (``transform``: the shorter side resized to it, then the centre square cropped).
        hint: appended to the "folder not found" error, e.g. where a copy of the data set lives.
        labels: ``none`` or ``folders`` (one class per subfolder of ``root``; images directly in ``root`` are left
            out, with a warning).
        classes, num_classes: the class names and their number as the config resolved them
            (``${ganx_class_folders:...}``), checked against the folder; conditional models read ``data.num_classes``.
        Other args: see ``ImageDataModule``.
    """

    channels = 3
    num_classes = None
    batch_kind = BatchKind.IMAGES
    transform = "resize_center_crop"

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int = 64,
        hint: str = "",
        labels: str = "none",
        classes: list[str] | None = None,
        num_classes: int | None = None,
        **options,
    ) -> None:
        super().__init__(image_size=image_size, **options)
        if labels not in LABELS:
            raise DataError(f"data.labels={labels!r} is not an option: none (unlabeled) or folders (one class per "
                            "subfolder of data.root)")
        self.root = Path(root).expanduser().absolute()
        self.hint = hint
        self.labels = labels
        self.unreadable: list[Path] = []
        self.class_names: list[str] | None = None
        if labels == "folders":
            self.class_names = class_folders(self.root)
            self.num_classes = len(self.class_names)
            self.batch_kind = BatchKind.LABELED_IMAGES
        stated = {"classes": None if classes is None else list(classes), "num_classes": num_classes}
        found = {"classes": self.class_names, "num_classes": self.num_classes}
        for key, value in stated.items():
            if value is not None and value != found[key]:
                raise DataError(f"data.{key}={value}, but {self.root} with data.labels={labels} has {found[key]}; "
                                f"leave data.{key} to the config (it reads the folder)")

    @classmethod
    def batch_kind_for(cls, options: Mapping[str, Any]) -> BatchKind:
        return BatchKind.LABELED_IMAGES if options.get("labels") == "folders" else cls.batch_kind

    def _build_sets(self) -> tuple[Dataset, Dataset]:
        require_folder(
            self.root,
            f"image folder not found: {self.root}. Point data.root=<folder> at a folder of images. {self.hint}"
        )
        files = readable_images(self.root, self.unreadable)
        labels = self._folder_labels(files) if self.class_names is not None else None
        if labels is not None:
            files = [f for f, y in zip(files, labels, strict=True) if y is not None]
            labels = [y for y in labels if y is not None]
        if not files:
            raise DataError(
                f"no readable image files in {self.root} (searched recursively for {', '.join(EXTENSIONS)}, "
                f"any case; {len(self.unreadable)} candidate file(s) were not readable images)"
            )
        n_val = capped_val_size(self.val_size, len(files), str(self.root))
        train_idx, val_idx = split_indices(len(files), n_val, self.seed)
        # Keep each split in sorted order; split-local datasets mean a bad file is replaced within its own split.
        splits = [sorted(idx.tolist()) for idx in (train_idx, val_idx)]
        log.info("%s: %d train / %d val images", self.root, *map(len, splits))
        return tuple(ImageFileDataset([files[i] for i in split], self.image_size,
                                      None if labels is None else [labels[i] for i in split]) for split in splits)

    def _folder_labels(self, files: list[Path]) -> list[int | None]:
        """Each file's class: the index of its top subfolder of ``root`` (None: a file directly in ``root``); a class
        folder without a readable image is refused (its class could never be drawn)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        labels = [index.get(f.relative_to(self.root).parts[0]) if len(f.relative_to(self.root).parts) > 1 else None
                  for f in files]
        outside = labels.count(None)
        if outside:
            log.warning("%s: data.labels=folders leaves out the %d image(s) directly in it (not in a class subfolder)",
                        self.root, outside)
        empty = [name for i, name in enumerate(self.class_names) if i not in labels]
        if empty:
            raise DataError(f"data.labels=folders: the class folder(s) {', '.join(empty)} of {self.root} hold no "
                            "readable image; add images or remove the folder(s)")
        return labels

    def summary(self) -> dict[str, Any]:
        return {
            "source": "folder",
            "root": str(self.root),
            **({"labels": "folders", "classes": self.class_names} if self.class_names is not None else {}),
            **super().summary(),
            **skipped_summary(self.unreadable, (self.train_set, self.val_set)),
        }
