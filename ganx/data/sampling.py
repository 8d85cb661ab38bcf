"""A shuffling sampler whose order is a pure function of (seed, epoch), so a resumed run sees the same batches.

A plain ``RandomSampler`` draws each epoch's order from the global RNG (and Lightning restarts an epoch's iterator
on resume), so a run resumed mid-epoch would see different batches than the uninterrupted run. Here epoch e is
``randperm(n)`` under seed ``seed * 1_000_003 + e``, and ``resume_at(batches_done)`` skips what was consumed.
"""

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableShuffleSampler(Sampler[int]):
    def __init__(self, num_samples: int, batch_size: int, seed: int = 0):
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
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
        self.epoch, self.start_batch = self.epoch + 1, 0
        yield from order[start:].tolist()
