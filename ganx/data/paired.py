"""Paired image-to-image data (``data=paired``) for pix2pix: batches of aligned ``(input, target)`` images.

Three layouts (``layout=``):

* ``aligned``: the official pix2pix data sets (facades, maps, edges2shoes, ...): each file holds A and B side by side,
  A on the left. ``root/train/`` for training and ``root/val/`` (else ``root/test/``) held out; a folder without a
  ``train/`` folder is split with ``val_size``.
* ``folders``: ``root/A/`` and ``root/B/`` with matching file names (the extension may differ, e.g. A/x.png and
  B/x.jpg); with ``A/train`` ``A/val`` ... the same split folders as above.
* ``derived``: pairs made from any folder of images (``root`` as ``data=anime`` reads it): B is the image and A is
  derived from it, ``derive=grayscale`` (colourisation) or ``derive=edges`` (Sobel edge map -> image).

``direction=AtoB`` feeds A to the generator and B is the target; ``BtoA`` swaps them. Training pairs are resized to
``load_size`` x ``load_size`` (aspect ratio ignored, bicubic, as the official ``resize_and_crop``), randomly cropped to
``image_size`` and randomly flipped — the same crop and flip for A and B, or the pair would no longer be aligned.
Held-out pairs are only resized to ``image_size``. ``input_channels`` / ``channels`` (1 or 3) set the channels of the
input and the target (grayscale or RGB); batches are float32 in [-1, 1].
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor, rgb_to_grayscale

from .base import BatchKind, DataError, ImageDataModule, _check_int, capped_val_size, require_folder, split_indices
from .image_folder import ImageFileDataset, readable_images, skipped_summary, to_rgb

log = logging.getLogger(__name__)

LAYOUTS = ("aligned", "folders", "derived")
DIRECTIONS = ("AtoB", "BtoA")
DERIVATIONS = ("grayscale", "edges")
HELD_OUT_FOLDERS = ("val", "test")

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_edges(gray: Tensor, threshold: float) -> Tensor:
    """An edge map of a grayscale image (1, H, W) in [0, 1]: 0 (black) where the Sobel gradient magnitude is at least
    ``threshold``, 1 (white) elsewhere — dark lines on white, as the edges of edges2shoes."""
    kernels = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1).to(gray)
    gradients = F.conv2d(F.pad(gray.unsqueeze(0), (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = gradients.pow(2).sum(dim=1).sqrt()
    return (magnitude < threshold).to(gray.dtype)


def split_folders(root: Path) -> tuple[Path, Path | None]:
    """(training folder, held-out folder or None): ``root/train`` and ``root/val`` (or ``root/test``) when there is a
    ``train/`` folder, as in the official data sets; else ``root`` itself and no held-out folder."""
    if (root / "train").is_dir():
        held_out = next((root / name for name in HELD_OUT_FOLDERS if (root / name).is_dir()), None)
        return root / "train", held_out
    return root, None


def matched_pairs(folder_a: Path, folder_b: Path, unreadable: list[Path]) -> list[tuple[Path, Path]]:
    """(A file, B file) for every relative path (without extension) present in both folders, sorted; files that are
    not readable images are added to ``unreadable``."""
    b_by_name = {f.relative_to(folder_b).with_suffix(""): f for f in readable_images(folder_b, unreadable)}
    a_files = readable_images(folder_a, unreadable)
    pairs = [(a, b_by_name[a.relative_to(folder_a).with_suffix("")]) for a in a_files
             if a.relative_to(folder_a).with_suffix("") in b_by_name]
    unmatched = len(a_files) + len(b_by_name) - 2 * len(pairs)
    if unmatched:
        log.warning("%s and %s: %d image(s) without a partner of the same name are left out", folder_a, folder_b, unmatched)
    if not pairs:
        examples = ", ".join(str(f.relative_to(folder_a)) for f in a_files[:3]) or "no images"
        raise DataError(
            f"no image in {folder_a} has a partner of the same name (extension aside) in {folder_b} (A holds: "
            f"{examples}); layout=folders pairs A/<name>.* with B/<name>.*"
        )
    return pairs


class PairedImages(ImageFileDataset):
    """Pair sources -> (input, target) tensors in [-1, 1], with one random crop and flip shared by both images.

    ``sources`` are files (``aligned``, ``derived``) or (A file, B file) tuples (``folders``). An undecodable source is
    replaced by the next one (``ImageFileDataset``).
    """

    def __init__(self, sources: list, layout: str, direction: str, derive: str, edge_threshold: float,
                 load_size: int, image_size: int, train: bool, flip: bool, input_channels: int, channels: int):
        super().__init__(sources, image_size)
        self.layout, self.direction, self.derive, self.edge_threshold = layout, direction, derive, edge_threshold
        self.input_channels, self.channels = input_channels, channels
        size = load_size if train else image_size
        self.draws_randomly = train  # random crops and flips, seeded per item (ganx.data.sampling)
        steps: list[Any] = [v2.Resize((size, size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)]
        if train:
            steps.append(v2.RandomCrop(image_size))
            if flip:
                steps.append(v2.RandomHorizontalFlip())
        # One call transforms every image passed to it with the same random parameters (torchvision.transforms.v2).
        self.transform = v2.Compose(steps)

    def read(self, source) -> tuple[Image.Image | None, Image.Image]:
        """(A, B) as RGB PIL images; A is None for derived pairs (it is made from B after the crop and flip)."""
        if self.layout == "folders":
            path_a, path_b = source
            return self._open(path_a), self._open(path_b)
        image = self._open(source)
        if self.layout == "derived":
            return None, image
        half = image.width // 2
        return image.crop((0, 0, half, image.height)), image.crop((half, 0, 2 * half, image.height))

    @staticmethod
    def _open(path: Path) -> Image.Image:
        with Image.open(path) as im:
            im.load()  # decode while the file is open; raises on truncated data
            return to_rgb(im)

    def derived_input(self, image: Tensor) -> Tensor:
        """A for a derived pair, from B (3, H, W) in [0, 1]: its grayscale (ITU-R 601 luma, as PIL's "L") or edges."""
        gray = rgb_to_grayscale(image)
        return gray if self.derive == "grayscale" else sobel_edges(gray, self.edge_threshold)

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        a, b = self.read(self.files[index])
        if a is None:
            b = self.transform(tv_tensors.Image(pil_to_tensor(b))).float() / 255
            a = self.derived_input(b)
        else:
            a, b = (t.float() / 255 for t in self.transform(tv_tensors.Image(pil_to_tensor(a)),
                                                            tv_tensors.Image(pil_to_tensor(b))))
        source, target = (a, b) if self.direction == "AtoB" else (b, a)
        return self._channels(source, self.input_channels) * 2 - 1, self._channels(target, self.channels) * 2 - 1

    @staticmethod
    def _channels(image: Tensor, channels: int) -> Tensor:
        if image.shape[0] == channels:
            return image.as_subclass(Tensor)
        return rgb_to_grayscale(image).as_subclass(Tensor) if channels == 1 else image.expand(3, -1, -1).as_subclass(Tensor)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        pair, _ = super().__getitem__(index)
        return pair


class PairedDataModule(ImageDataModule):
    """Aligned ``(input, target)`` pairs for pix2pix; see the module docstring for the layouts.

    Args:
        root: the data set folder (``python -m ganx.data.download pix2pix facades`` fetches an official one).
        layout: aligned | folders | derived.
        direction: AtoB (A is the input) | BtoA.
        derive: for ``layout=derived``: grayscale (grayscale -> colour) | edges (edge map -> image).
        edge_threshold: Sobel gradient magnitude (intensities in [0, 1]) from which a pixel is an edge.
        load_size: training pairs are resized to load_size x load_size before the random crop (official 286).
        image_size: side of the random training crops and of the resized held-out pairs (official 256).
        flip: random horizontal flips of training pairs.
        input_channels, channels: channels of the input and of the target images: 1 (grayscale) or 3 (RGB).
        val_size: held-out pairs when the data set has no held-out folder (at most a fifth of the pairs).
        hint: appended to the "folder not found" error.
        Other args: see ``ImageDataModule``; ``real_dataloader`` yields ``(input, target)`` pairs.
    """

    channels = 3  # the default; an instance sets its own (data.channels)
    num_classes = None
    batch_kind = BatchKind.IMAGE_PAIRS
    transform = "resize_random_crop"

    def __init__(
        self,
        root: str | os.PathLike,
        layout: str = "aligned",
        direction: str = "AtoB",
        derive: str = "grayscale",
        edge_threshold: float = 0.5,
        load_size: int = 286,
        image_size: int = 256,
        flip: bool = True,
        input_channels: int = 3,
        channels: int = 3,
        batch_size: int = 1,
        val_size: int = 100,
        hint: str = "",
        **options,
    ) -> None:
        for name, value, choices in (("layout", layout, LAYOUTS), ("direction", direction, DIRECTIONS),
                                     ("derive", derive, DERIVATIONS)):
            if value not in choices:
                raise DataError(f"data.{name}={value!r}; choose one of {', '.join(choices)}")
        for name, value in (("input_channels", input_channels), ("channels", channels)):
            if value not in (1, 3):
                raise DataError(f"data.{name}={value!r}; images are 1 (grayscale) or 3 (RGB) channels")
        self.channels = channels  # the target's channels: what the generator outputs (${data.channels})
        super().__init__(batch_size=batch_size, val_size=val_size, image_size=image_size, channels=channels, **options)
        self.load_size = _check_int("load_size", load_size, 1)
        if load_size < image_size:
            raise DataError(f"data.load_size={load_size} is smaller than data.image_size={image_size}, the random crop "
                            "taken from it; set load_size >= image_size (the paper: 286 and 256)")
        if edge_threshold <= 0:
            raise DataError(f"data.edge_threshold must be > 0, got {edge_threshold}")
        self.root = Path(root).expanduser().absolute()
        self.layout, self.direction, self.derive, self.edge_threshold = layout, direction, derive, float(edge_threshold)
        self.flip, self.input_channels, self.hint = bool(flip), input_channels, hint
        self.held_out_source = ""
        self.unreadable: list[Path] = []

    def _sources(self, folder: Path) -> list:
        if self.layout == "folders":
            return matched_pairs(folder / "A", folder / "B", self.unreadable)
        files = readable_images(folder, self.unreadable)
        if not files:
            raise DataError(f"no readable images in {folder} (searched recursively); layout={self.layout} needs "
                            + ("A|B side-by-side images" if self.layout == "aligned" else "a folder of images"))
        return files

    def _build_sets(self) -> tuple[Dataset, Dataset]:
        require_folder(
            self.root,
            f"paired data set not found: {self.root}. Point data.root=<folder> at one (layout={self.layout}), or "
            f"fetch an official one: python -m ganx.data.download pix2pix facades. {self.hint}"
        )
        if self.layout == "folders":
            for name in ("A", "B"):
                if not (self.root / name).is_dir():
                    raise DataError(f"{self.root / name} not found: layout=folders needs {self.root}/A/ and "
                                    f"{self.root}/B/ with matching file names. {self.hint}")
            train_dir, held_out_dir = split_folders(self.root / "A")
            # split folders live inside A/ and B/: pair A/train with B/train, A/val with B/val
            train_sources = matched_pairs(train_dir, self.root / "B" / train_dir.relative_to(self.root / "A"),
                                          self.unreadable)
            held_out = (matched_pairs(held_out_dir, self.root / "B" / held_out_dir.relative_to(self.root / "A"),
                                      self.unreadable) if held_out_dir else None)
        else:
            train_dir, held_out_dir = split_folders(self.root)
            train_sources = self._sources(train_dir)
            held_out = self._sources(held_out_dir) if held_out_dir else None
        if held_out is None:
            n_val = capped_val_size(self.val_size, len(train_sources), str(self.root))
            train_idx, val_idx = split_indices(len(train_sources), n_val, self.seed)
            held_out = [train_sources[i] for i in sorted(val_idx.tolist())]
            train_sources = [train_sources[i] for i in sorted(train_idx.tolist())]
            self.held_out_source = f"val_size split of {train_dir}"
        else:
            self.held_out_source = str(held_out_dir)
        log.info("%s (%s): %d training / %d held-out pairs", self.root, self.layout, len(train_sources), len(held_out))

        def pairs(sources: list, train: bool) -> PairedImages:
            return PairedImages(sources, self.layout, self.direction, self.derive, self.edge_threshold, self.load_size,
                                self.image_size, train, self.flip, self.input_channels, self.channels)

        return pairs(train_sources, True), pairs(held_out, False)

    def summary(self) -> dict[str, Any]:
        info = {"source": f"paired_{self.layout}", "root": str(self.root), **super().summary(),
                "direction": self.direction, "input_channels": self.input_channels, "load_size": self.load_size,
                "held_out": self.held_out_source, **skipped_summary(self.unreadable, (self.train_set, self.val_set))}
        if self.layout == "derived":
            info["derive"] = self.derive
        return info
