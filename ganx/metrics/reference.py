"""Reference statistics cached on disk: the real split's features, extracted once per protocol.

A training run's first evaluation, and every ``ganx.evaluate``, would otherwise run the extractor on the whole real
split again. The cache holds the real split's pooled features (from which FID's mean and covariance, KID's kernel
and the k-NN radii of precision/recall/density/coverage follow) under ``$GANX_CACHE_DIR/reference/``, keyed by
everything the features depend on: the images themselves (a hash of their uint8 pixels, so a different data set,
split, seed, size or file gives another key), the split's name, the extractor with its weights' hash, the resize
mode and the number of images. A file whose stored key differs from the requested one is never used.
"""

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganx.metrics.extractors.base import to_uint8
from ganx.metrics.extractors.classifier import cache_dir

log = logging.getLogger(__name__)


def dataset_fingerprint(dataset) -> str:
    """First 16 hex digits of the SHA-256 of every image's uint8 pixels (and shape), in order.

    Reads the images without any network: cheap next to the extractor it spares (a tensor data set of 10,000 28x28
    images takes well under a second)."""
    sha = hashlib.sha256()
    for index in range(len(dataset)):
        item = dataset[index]
        image = item[0] if isinstance(item, (tuple, list)) else item
        pixels = to_uint8(torch.as_tensor(image))
        sha.update(str(tuple(pixels.shape)).encode())
        sha.update(pixels.numpy().tobytes())
    return sha.hexdigest()[:16]


def reference_key(fingerprint: str, split: str, extractor: str, resize: str, count: int) -> dict[str, Any]:
    return {"data": fingerprint, "split": split, "extractor": extractor, "resize": resize, "count": int(count)}


def reference_path(key: dict[str, Any], root: Path | None = None) -> Path:
    """``<cache>/reference/<sha of the key>.pt`` (``cache`` = ``$GANX_CACHE_DIR`` or ~/.cache/ganx)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return (root or cache_dir()) / "reference" / f"{digest}.pt"


def held_out_reference(dataset, extractor: str, resize: str) -> tuple[Path, dict[str, Any]]:
    """(cache file, key) of the features of ``dataset``, the held-out ``val`` split, on ``extractor`` (its name)."""
    key = reference_key(dataset_fingerprint(dataset), "val", extractor, resize, len(dataset))
    return reference_path(key), key


def load_reference(path: Path, key: dict[str, Any]) -> Tensor | None:
    """The cached features for ``key``, or None (no file, another key, an unreadable file)."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a file cut short by a kill, or not ours: recompute and replace it
        log.warning("reference cache %s is unreadable (%s: %s); recomputing it.", path, type(err).__name__, err)
        return None
    if stored.get("key") != key or len(stored["features"]) != key["count"]:
        return None
    return stored["features"]


def save_reference(path: Path, key: dict[str, Any], features: Tensor) -> None:
    """Write atomically (a concurrent run or a kill never leaves half a file under the final name); the mean and
    covariance are stored too, for readers that only want FID statistics."""
    path.parent.mkdir(parents=True, exist_ok=True)
    features = features.detach().float().cpu()
    double = features.double()
    partial = path.with_name(f"{path.name}.{torch.randint(1 << 30, ()).item()}.tmp")
    torch.save({"key": key, "features": features, "mean": double.mean(0),
                "cov": torch.cov(double.T) if len(double) > 1 else None}, partial)
    partial.replace(path)
