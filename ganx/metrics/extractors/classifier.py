"""A small CNN classifier for labeled grayscale data: the feature extractor of the "MNIST FID / IS".

Many GAN papers on MNIST-like data compute FID on the penultimate activations of a classifier trained on the data
set and the Inception Score on its logits, because ImageNet's Inception-v3 knows nothing about digits or clothes.
``python -m ganx.features data=fashion_mnist [out=PATH]`` trains one; without ``out=`` it goes to the cache
(``$GANX_CACHE_DIR`` or ``~/.cache/ganx``), where ``metrics.features=classifier`` (the default for such data) finds
it; training uses it on first use otherwise.

The classifier always works at 28x28 (inputs of other sizes are resized), so runs at image_size 28, 32 or 64 share
one feature space and their numbers can be compared. Its cache key is the data set (class, source, sizes) and the
training recipe, so a classifier trained on the 5,000-image offline MNIST subset is never used for full MNIST.
"""

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ganx.metrics.extractors.base import (
    ExtractorOptions,
    FeatureExtractor,
    MetricsSetupError,
    file_digest,
    register_extractor,
)

log = logging.getLogger(__name__)

INPUT_SIZE = 28
# Changing any of these changes the cache key, so old cached classifiers are not mixed with new ones.
# At least `epochs` passes and at least `min_steps` updates: 2 epochs of full MNIST (~940 steps), or ~19 epochs of
# the 4,000 training images of the offline MNIST subset, where 2 epochs (63 steps) leave the classifier undertrained.
RECIPE = {"version": 1, "width": 16, "feature_dim": 128, "epochs": 2, "min_steps": 600, "batch_size": 128, "lr": 1e-3,
          "seed": 0}
FORMAT = "ganx.classifier/1"  # the file format's name (kept when the module moved: cached files stay valid)


class ClassifierError(ValueError):
    """A classifier that cannot be trained or loaded; the message says why and what to do."""


class SmallCNN(nn.Module):
    """Two conv + max-pool stages and a ReLU feature layer (the FID features), then a linear head (the IS logits)."""

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 16, feature_dim: int = 128,
                 input_size: int = INPUT_SIZE):
        super().__init__()
        self.input_size = input_size
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (input_size // 4) ** 2, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def cache_dir() -> Path:
    """Where ganx keeps reusable artifacts: ``$GANX_CACHE_DIR``, else ``$XDG_CACHE_HOME/ganx``, else ~/.cache/ganx."""
    if os.environ.get("GANX_CACHE_DIR"):
        return Path(os.environ["GANX_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "ganx"


def is_labeled_grayscale(data_cfg: DictConfig) -> bool:
    """Whether a data config names a data module the classifier can be trained on (class attributes only, no I/O)."""
    cls = get_class(data_cfg._target_)
    return getattr(cls, "channels", None) == 1 and getattr(cls, "num_classes", None) is not None


def classifier_data(data_cfg: DictConfig):
    """The data set at the classifier's resolution, with the whole held-out split (up to 10,000 images) as test set."""
    if not is_labeled_grayscale(data_cfg):
        raise ClassifierError(
            f"the classifier needs labeled grayscale data (MNIST-like); {data_cfg._target_} is not. "
            "Use metrics.features=inception for RGB or unlabeled data, or metrics=none."
        )
    datamodule = instantiate(data_cfg, image_size=INPUT_SIZE, val_size=10_000, seed=0)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def cache_key(datamodule) -> tuple[str, dict[str, Any]]:
    """(file stem, facts): what the classifier depends on — the data actually loaded and the recipe."""
    summary = datamodule.summary()
    facts = {
        "data": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        **{k: summary.get(k) for k in ("source", "train_size", "val_size", "channels", "num_classes")},
        "input_size": INPUT_SIZE,
        "recipe": RECIPE,
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
    name = type(datamodule).__name__.removesuffix("DataModule").lower()
    return f"{name}-{digest}", facts


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> tuple[float, int]:
    model.eval()
    correct = total = 0
    for images, labels in loader:
        correct += int((model(images).argmax(1) == labels).sum())
        total += len(labels)
    return correct / max(total, 1), total


def train_classifier(datamodule) -> tuple[SmallCNN, dict[str, Any]]:
    """Train ``SmallCNN`` on the training split with the fixed ``RECIPE``; returns the model and its test accuracy.

    Runs inside ``fork_rng`` with its own seed: the same data gives the same classifier, and a training run that
    builds one on first use keeps its own random stream.
    """
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # callers may be in no_grad (evaluate)
        torch.manual_seed(RECIPE["seed"])
        model = SmallCNN(datamodule.channels, datamodule.num_classes, RECIPE["width"], RECIPE["feature_dim"])
        optimizer = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"])
        loader = DataLoader(datamodule.train_set, batch_size=RECIPE["batch_size"], shuffle=True,
                            generator=torch.Generator().manual_seed(RECIPE["seed"]))
        epochs = max(RECIPE["epochs"], math.ceil(RECIPE["min_steps"] / len(loader)))
        start = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            for images, labels in loader:
                loss = F.cross_entropy(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            log.info("classifier epoch %d/%d: loss %.3f (%.0f s)", epoch + 1, epochs, loss.item(),
                     time.perf_counter() - start)
    test_accuracy, test_images = accuracy(model, datamodule.real_dataloader("val", batch_size=500))
    return model.eval(), {"test_accuracy": test_accuracy, "test_images": test_images,
                          "train_seconds": round(time.perf_counter() - start, 1)}


def save_classifier(model: SmallCNN, info: dict[str, Any], facts: dict[str, Any], path: Path) -> None:
    """Write atomically (a half-written file never looks like a classifier); never replace an existing file."""
    if path.exists():
        raise ClassifierError(f"{path} already exists; ganx never overwrites it. Choose another out=PATH.")
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": FORMAT,
        "state_dict": model.state_dict(),
        "arch": {"channels": model.features[0].in_channels, "num_classes": model.head.out_features,
                 "width": RECIPE["width"], "feature_dim": RECIPE["feature_dim"], "input_size": model.input_size},
        "facts": facts,
        **info,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


def load_classifier(path: str | Path) -> tuple[SmallCNN, dict[str, Any]]:
    """(model in eval mode, metadata) from a ``save_classifier`` file, loaded with ``weights_only=True``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClassifierError(f"no classifier file at {path}; train one with `python -m ganx.features data=NAME out=PATH`.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types; the file is unusable either way
        raise ClassifierError(f"{path} is not a loadable ganx classifier ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ClassifierError(f"{path} is not a ganx classifier (format {FORMAT}); make one with python -m ganx.features.")
    model = SmallCNN(**checkpoint["arch"])
    model.load_state_dict(checkpoint["state_dict"])
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model.eval().requires_grad_(False), meta


def wait_for(path: Path, timeout_s: float = 1800.0) -> None:
    """Non-zero DDP ranks wait for rank 0's classifier rather than train their own copy."""
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise ClassifierError(f"waited {timeout_s:.0f} s for rank 0 to write {path}; pass metrics.classifier_ckpt=PATH.")
        time.sleep(2.0)


def ensure_classifier(data_cfg: DictConfig) -> Path:
    """The cached classifier for this data set, trained and cached on first use (by rank 0 only)."""
    datamodule = classifier_data(data_cfg)
    stem, facts = cache_key(datamodule)
    path = cache_dir() / "classifiers" / f"{stem}.pt"

    def train_and_save(path: Path) -> None:
        log.info("Training the metrics classifier for %s on %d images (first use; cached at %s)",
                 facts["data"], facts["train_size"], path)
        model, info = train_classifier(datamodule)
        log.info("Classifier test accuracy %.4f on %d held-out images (%.0f s)", info["test_accuracy"],
                 info["test_images"], info["train_seconds"])
        save_classifier(model, info, facts, path)

    return ensure_cached(path, train_and_save)


def ensure_cached(path: Path, train_and_save: Callable[[Path], None]) -> Path:
    """``path`` if it exists; else rank 0 trains and saves it there, and the other DDP ranks wait for that file."""
    if path.is_file():
        return path
    if rank_zero_only.rank > 0:
        wait_for(path)
        return path
    try:
        train_and_save(path)
    except Exception:
        if not path.is_file():  # another process finished first: its file (same data, same recipe) is used
            raise
    return path


class ClassifierFeatures(FeatureExtractor):
    """A ``SmallCNN`` file: its ReLU feature layer for FID/KID and its class logits for IS."""

    def __init__(self, checkpoint_path: str | Path):
        super().__init__()
        try:
            self.net, meta = load_classifier(checkpoint_path)
        except ClassifierError as err:
            raise MetricsSetupError(str(err)) from err
        arch = meta["arch"]
        self.channels, self.input_size = arch["channels"], arch["input_size"]
        self.pool_dim, self.num_logits = arch["feature_dim"], arch["num_classes"]
        path = Path(checkpoint_path).expanduser()
        self.name = f"classifier:{path.stem}:{file_digest(path)}"
        self.info = {"network": "ganx.classifier SmallCNN", "checkpoint": str(path), "data": meta["facts"]["data"],
                     "data_source": meta["facts"]["source"], "test_accuracy": meta["test_accuracy"],
                     "fid_features": f"penultimate ReLU ({self.pool_dim})", "is_logits": f"classes ({self.num_logits})"}
        self.freeze()

    @staticmethod
    def required(extractor: FeatureExtractor, needed_by: str, num_classes: int | None = None) -> "ClassifierFeatures":
        """``extractor`` if it is a classifier (of ``num_classes`` classes, when given), else why ``needed_by`` needs
        one, as the error."""
        if isinstance(extractor, ClassifierFeatures) and num_classes in (None, extractor.num_logits):
            return extractor
        classes = f"the {num_classes} data classes" if num_classes else "the data's classes"
        raise ValueError(f"{needed_by} need a classifier of {classes} as feature extractor (metrics.features="
                         f"classifier in ganx.train, features=classifier in ganx.evaluate), got "
                         f"{getattr(extractor, 'name', type(extractor).__name__)}.")

    def logits(self, features: Tensor) -> Tensor:
        """The class logits in this extractor's output ``features`` (they follow the ``pool_dim`` FID features)."""
        return features[:, self.pool_dim :]

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[1] != self.channels:
            raise ValueError(f"the classifier takes {self.channels}-channel images, got shape {tuple(images.shape)}")
        x = images.float()
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        features = self.net.features(x)
        return torch.cat([features, self.net.head(features)], dim=1)


@register_extractor("classifier")
def build_classifier(data_cfg: DictConfig, options: ExtractorOptions) -> ClassifierFeatures:
    """``options.classifier_ckpt``, else the cached classifier of this data set (trained on first use)."""
    try:
        path = options.classifier_ckpt or ensure_classifier(data_cfg)
    except ClassifierError as err:
        raise MetricsSetupError(str(err)) from err
    extractor = ClassifierFeatures(path)
    if get_class(extractor.info["data"]) is not get_class(data_cfg._target_):
        log.warning("The metrics classifier %s was trained on %s, not on this run's %s: its numbers are not the usual "
                    "protocol for this data set.", path, extractor.info["data"], data_cfg._target_)
    return extractor
