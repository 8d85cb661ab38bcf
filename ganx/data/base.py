"""Shared base for ganx data modules: loader construction, splits, the error type.

Every data module yields ``(images, labels)`` batches with images float32 in [-1, 1] of shape (N, C, H, W)
and labels int64 of shape (N,). Subclasses only implement ``_build_sets()`` and ``summary()``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ganx.data.sampling import ResumableShuffleSampler, SeededDraws

log = logging.getLogger(__name__)


class BatchKind(StrEnum):
    """What a data module's training batches hold (its ``batch_kind``). A model lists the kinds its training step
    reads in ``trains_on``; ``ganx.preflight.check_model_data_pairing`` refuses a model and data that do not meet."""

    IMAGES = "unlabeled images"
    LABELED_IMAGES = "labeled images"
    POINTS = "2-D points"
    IMAGE_PAIRS = "aligned (input, target) image pairs"
    UNPAIRED_IMAGES = "unpaired images of two domains"


class DataError(ValueError):
    """Bad data configuration or missing/unreadable data; the message names the path or value and the fix.

    Subclasses ValueError so callers catching ValueError (e.g. for a too-small training set) also catch it.
    """

    def __init__(self, message: str) -> None:
        # torch re-raises an error from a DataLoader worker in the main process as DataError("Caught DataError in
        # DataLoader worker process 0.\nOriginal Traceback ...\nganx.data.base.DataError: <message>"): keep the one-line
        # message, so every command prints it as raised with workers=0, and the worker's traceback as a note (shown
        # with the traceback, HYDRA_FULL_ERROR=1).
        if message.startswith(f"Caught {type(self).__name__} in DataLoader worker"):
            self.add_note(message)
            message = message.rstrip().rpartition("\n")[2].partition(": ")[2]
        super().__init__(message)


# How a data module makes its images of ``image_size`` x ``image_size`` pixels (the output side length, for every data
# set): each image data module does one of these (its ``transform``), and each data config states it (data.transform).
TRANSFORMS = {
    "resize": "resized to image_size x image_size (antialiased bilinear; nothing done at the native size)",
    "resize_center_crop": "shorter side resized to image_size (aspect ratio kept), then the centre square cropped",
    "resize_random_crop": "training images resized to load_size x load_size (bicubic, aspect ratio ignored), then a "
                          "random image_size crop (and flip); held-out images resized to image_size x image_size",
}


def _check_int(name: str, value: Any, minimum: int) -> int:
    """Validate an integer constructor argument where it enters, so a typo in a config fails early."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"data.{name} must be an integer >= {minimum}, got {value!r}")
    return value


def require_folder(root: Path, not_found: str) -> None:
    """Raise ``DataError(not_found)`` unless ``root`` is a folder; a file given as data.root gets its own message
    (it exists, so "not found" would mislead)."""
    if root.is_file():
        raise DataError(f"data.root={root} is a file, but it must be a folder; did you mean data.root={root.parent}?")
    if not root.is_dir():
        raise DataError(not_found)


def split_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic disjoint (train, val) index split of ``range(n)``; ``val_size`` must be <= n."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]


def capped_val_size(requested: int, n: int, what: str) -> int:
    """Hold out at most a fifth of a small data set, so tiny folders still leave most images for training."""
    cap = n // 5
    if requested > cap:
        log.info("%s: only %d images, holding out %d for validation instead of val_size=%d", what, n, cap, requested)
        return cap
    return requested


class ShardSampler(DistributedSampler):
    """Rank r of W gets indices r, r + W, r + 2W, ...: every image exactly once over all ranks, in a fixed order.

    torch's DistributedSampler, which Lightning puts into validation loaders, pads the shards to equal length with
    repeated images, which FID would count twice. Subclassing it keeps Lightning from replacing this one.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class ImageDataModule(L.LightningDataModule):
    """Base class: holds the common arguments and builds the loaders from ``train_set`` / ``val_set``.

    The common arguments are keyword-only: a data module lists its own arguments and passes the rest on
    (``**options``), so each option is declared and checked here once.

    Args:
        batch_size: images per real batch seen by one optimizer step.
        num_workers: DataLoader worker processes.
        val_size: held-out real images used by metrics (``real_dataloader``).
        critic_steps: the model's critic steps per generator step (``model.critic_steps``): the training loader
            yields ``batch_size * critic_steps`` images per batch, so each critic step gets a fresh real minibatch.
        seed: seed of the deterministic train/val split.
        image_size: side length of the square output images, for every data set; how the images get there is the
            module's ``transform``.
        transform: a name of ``TRANSFORMS``, stated in each data config (``data.transform``) so that the config says
            how its images are made; it must be the module's own (None: the module's own). Points have none.
        channels: must equal the data set's channel count when given (the configs state it for the model's nets).
        num_classes: must equal the data set's number of classes when given (the configs state it for the
            class-conditional models, ``model.num_classes: ${data.num_classes}``).
    """

    channels: int
    num_classes: int | None = None
    batch_kind: BatchKind
    transform: str | None = None  # how the images are made (TRANSFORMS)

    def __init__(
        self,
        *,
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: int = 1000,
        critic_steps: int = 1,
        seed: int = 0,
        image_size: int = 64,
        channels: int | None = None,
        transform: str | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if transform is not None and transform != type(self).transform:
            own = type(self).transform
            raise DataError(
                f"data.transform={transform}, but {type(self).__name__} makes its images by "
                + (f"{own} ({TRANSFORMS[own]}); set data.transform={own} or leave it out." if own else
                   "no transform (it yields points, not images); leave data.transform out.")
            )
        if channels is not None and channels != self.channels:
            # The configs state channels so the model's nets can be built from ${data.channels}.
            raise DataError(f"data.channels={channels}, but {type(self).__name__} yields {self.channels}-channel images")
        if num_classes is not None and num_classes != self.num_classes:
            raise DataError(f"data.num_classes={num_classes}, but {type(self).__name__} has {self.num_classes} classes")
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.num_workers = _check_int("num_workers", num_workers, 0)
        self.val_size = _check_int("val_size", val_size, 0)
        self.critic_steps = _check_int("critic_steps", critic_steps, 1)
        self.seed = _check_int("seed", seed, 0)
        self.image_size = _check_int("image_size", image_size, 1)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @classmethod
    def batch_kind_for(cls, options: Mapping[str, Any]) -> BatchKind:
        """What the data module built from the config ``options`` yields (``ganx.preflight`` asks before building it);
        a module whose options change it (``data.labels=folders``) overrides this."""
        return cls.batch_kind

    # --- hooks -------------------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Create ``train_set`` and ``val_set``; a second call does nothing (Lightning may call it per stage)."""
        if self.train_set is not None:
            return
        self.train_set, self.val_set = self._build_sets()

    def _build_sets(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable facts about what was loaded (subclasses add their source and path)."""
        self._require_setup()
        return {
            "train_size": len(self.train_set),
            "val_size": len(self.val_set),
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
        }

    # --- loaders -----------------------------------------------------------------------------------------------

    @property
    def loader_batch_size(self) -> int:
        """Images per training-loader batch: ``batch_size * critic_steps``."""
        return self.batch_size * self.critic_steps

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        n, need = len(self.train_set), self.loader_batch_size
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if n // world < need:
            # drop_last=True would silently yield zero batches and Lightning would "train" for nothing.
            per_process = f" per process ({n // world} of {n} for each of {world})" if world > 1 else ""
            raise DataError(
                f"training set has {n // world} images{per_process} but one loader batch needs {need} "
                f"(batch_size={self.batch_size} x critic_steps={self.critic_steps}); "
                f"lower data.batch_size to at most {n // world // self.critic_steps} or add images"
            )
        # Random crops, flips and the like are drawn per item from (seed, epoch, index): see ganx.data.sampling.
        keyed = getattr(self.train_set, "draws_randomly", False)
        sampler = ResumableShuffleSampler(n, need, self.seed, keyed=keyed, num_replicas=world, rank=rank)
        # A resumed run continues where its checkpoint stopped: one training batch per generator step.
        sampler.resume_at(getattr(getattr(self.trainer, "lightning_module", None), "generator_steps", 0))
        return DataLoader(
            SeededDraws(self.train_set, self.seed) if keyed else self.train_set,
            batch_size=need,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._pin_memory(),
            # Worker seeds come from this generator, not the global RNG, so creating a loader does not shift the
            # noise stream of a resumed run.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def real_dataloader(self, split: str = "val", batch_size: int | None = None, shuffle: bool = False) -> DataLoader:
        """Plain loader over real images for metrics; keeps every image (drop_last=False).

        A shuffled loader uses a generator seeded with ``seed``, so repeated calls see the same order.
        """
        self._require_setup()
        sets = {"val": self.val_set, "train": self.train_set}
        if split not in sets:
            raise DataError(f"real_dataloader(split={split!r}): split must be 'val' or 'train'")
        return DataLoader(
            sets[split],
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory(),
            # Shuffles and seeds workers from here, also unshuffled: without a generator, every iter() of a DataLoader
            # draws its workers' base seed from the global RNG, so a loader read during training (the 2-D scatter
            # plots) would shift the training noise stream.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        """The held-out split for FID/IS/KID during training (``ganx.metrics``): under DDP each rank gets a disjoint
        shard and the shards together hold every image exactly once (see ``ShardSampler``)."""
        self._require_setup()
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if len(self.val_set) < world:
            raise DataError(f"the held-out split has {len(self.val_set)} images; the metrics need at least one per "
                            f"process ({world}): raise data.val_size, or train with metrics=none")
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            sampler=ShardSampler(self.val_set, world, rank) if world > 1 else None,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory(),
            # Seeds workers from here, not from the global RNG: an evaluation leaves the training noise stream alone.
            generator=torch.Generator().manual_seed(self.seed),
        )

    # --- helpers -----------------------------------------------------------------------------------------------

    def _pin_memory(self) -> bool:
        """Pin only when the attached trainer runs on CUDA (pinning on CPU just costs time and a warning)."""
        from lightning.pytorch.accelerators import CUDAAccelerator

        trainer = getattr(self, "trainer", None)
        return trainer is not None and isinstance(getattr(trainer, "accelerator", None), CUDAAccelerator)

    def _require_setup(self) -> None:
        if self.train_set is None:
            raise DataError(f"{type(self).__name__}: call prepare_data() and setup() before using the data")
