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
from torch.utils.data import Dataset, DistributedSampler


class ResumableShuffleSampler(DistributedSampler):
    """Indices in a seeded per-epoch order, this process's shard of it under DDP; ``keyed=True`` yields draw keys
    ``epoch * num_samples + index`` for ``SeededDraws``.

    Epoch e is one permutation of all ``num_samples`` items for every process; process r of W takes its items
    r, r + W, r + 2W, ... (the last ``num_samples % W`` dropped, so every process makes the same number of steps), so
    the processes train on disjoint data. A ``DistributedSampler`` subclass, so Lightning uses it as it is instead of
    wrapping it in its own distributed sampler (whose wrapper assumes the full ``len`` and fails after a mid-epoch
    resume).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, keyed: bool = False, num_replicas: int = 1,
                 rank: int = 0):
        super().__init__(range(num_samples), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=True)
        self.batch_size, self.seed, self.keyed = batch_size, seed, keyed
        self.items = num_samples
        self.shard_size = num_samples // num_replicas
        self.batches_per_epoch = self.shard_size // batch_size  # the loader drops the last partial batch
        self.epoch, self.start_batch = 0, 0

    def resume_at(self, batches_done: int) -> None:
        """Continue after ``batches_done`` training batches of this process (one per step: the same on every rank)."""
        self.epoch, self.start_batch = divmod(batches_done, max(self.batches_per_epoch, 1))

    def set_epoch(self, epoch: int) -> None:
        """Lightning's epoch counter is not ours (ours continues mid-epoch across a resume): ignored."""

    def __len__(self) -> int:
        return self.shard_size

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.items, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        shard = order[self.rank: self.shard_size * self.num_replicas: self.num_replicas]
        offset = self.epoch * self.items if self.keyed else 0
        start = self.start_batch * self.batch_size
        self.epoch, self.start_batch = self.epoch + 1, 0
        yield from (shard[start:] + offset).tolist()


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
