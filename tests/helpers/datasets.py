"""Tiny generated data sets on disk and in memory, and a classifier file for the metrics, for tests that must not
download anything."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import TensorDataset


def write_image_folder(root: Path, n: int = 24, size: int = 32, seed: int = 0) -> Path:
    """A folder of random RGB PNGs (nested one level, as real image folders often are)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / f"part{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(sub / f"img{i:03d}.png")
    return root


def write_class_folders(root: Path, classes=("cat", "dog", "fox"), per_class: int = 8, size: int = 16) -> Path:
    """A folder of class subfolders (torchvision's ImageFolder layout, ``data.labels=folders``) of random RGB PNGs, one
    tint per class; the second class's images one level deeper, as a class folder may be nested."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        folder = root / name / ("nested" if k == 1 else "")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 128, (size, size, 3), dtype=np.uint8)
            pixels[..., k % 3] += 127
            Image.fromarray(pixels).save(folder / f"{name}{i:02d}.png")
    return root


def write_truncated_jpeg(path: Path, seed: int = 0) -> Path:
    """A JPEG cut in half: its header passes the setup scan (``scan_images``), decoding it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG")  # noise: the scan data dominates the file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def write_mnist_raw(data_dir: Path, n_train: int = 128, n_test: int = 64, seed: int = 0) -> Path:
    """Fake MNIST in torchvision's raw layout (uncompressed idx files), so data=mnist loads it without a download."""
    rng = np.random.default_rng(seed)
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], dtype=">i4").tobytes() + labels.tobytes())
    return data_dir


def untrained_classifier(path: Path, num_classes: int = 10) -> Path:
    """A ganx.metrics.extractors.classifier file with random weights for MNIST-like data: the metrics' code path without training
    a classifier (600 steps, ~20 s on a CPU core) in every test that computes metrics."""
    from ganx.metrics.extractors.classifier import SmallCNN, save_classifier

    torch.manual_seed(0)
    save_classifier(SmallCNN(1, num_classes), {"test_accuracy": 0.0, "test_images": 0},
                    {"data": "ganx.data.mnist.MNISTDataModule", "source": "random"}, path)
    return path


def data(n=48):
    """``n`` random 1x4x4 images in [-1, 1] (seeded), labelled 0: training data for ``tiny_gan``."""
    torch.manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 4, 4) * 2 - 1, torch.zeros(n, dtype=torch.long))
