"""A shuffling sampler whose order is a pure function of (seed, epoch), so a resumed run sees the same batches.

A plain ``RandomSampler`` draws each epoch's order from the global RNG (and Lightning restarts an epoch's iterator
on resume), so a run resumed mid-epoch would see different batches than the uninterrupted run. Here epoch e is
``randperm(n)`` under seed ``seed * 1_000_003 + e``, and ``resume_at(batches_done)`` skips what was consumed.

Items that draw random numbers (random crops and flips, the unpaired B image) must not draw them from a process's
running RNG stream either: DataLoader workers start theirs afresh on resume. Such data sets say ``draws_randomly``;
the sampler then yields draw keys ``epoch * n + index`` and ``SeededDraws`` seeds each item's draws from
(seed, epoch, index), in worker processes and in the main process alike.
"""

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ResumableShuffleSampler(Sampler[int]):
    """Indices in a seeded per-epoch order; ``keyed=True`` yields draw keys ``epoch * num_samples + index`` for
    ``SeededDraws``."""

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, keyed: bool = False):
        self.num_samples, self.batch_size, self.seed, self.keyed = num_samples, batch_size, seed, keyed
        self.batches_per_epoch = num_samples // batch_size  # the loader drops the last partial batch
        self.epoch, self.start_batch = 0, 0

    def resume_at(self, batches_done: int) -> None:
        """Continue after ``batches_done`` training batches (counted since the start of the run)."""
        self.epoch, self.start_batch = divmod(batches_done, max(self.batches_per_epoch, 1))

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        start = self.start_batch * self.batch_size
        offset = self.epoch * self.num_samples if self.keyed else 0
        self.epoch, self.start_batch = self.epoch + 1, 0
        yield from (order[start:] + offset).tolist()


class SeededDraws(Dataset):
    """``dataset[index]`` for draw key ``epoch * len(dataset) + index``, with torch's global RNG (which torchvision's
    random transforms use) seeded from (seed, epoch, index) during the item and restored afterwards, so an item's
    random draws do not depend on the worker that loads it, on resuming, or on the caller's random stream."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> Any:
        epoch, index = divmod(key, len(self.dataset))
        item_seed = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1, np.uint64)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(item_seed))
            return self.dataset[index]
