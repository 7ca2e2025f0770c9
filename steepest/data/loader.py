"""A loader for data that lives on the device: batches are index slices, no per-sample collation.

The order of epoch e is a permutation drawn from a generator seeded with (seed, e), so any
position in training can be reproduced from (epoch, step) alone: that is what resume relies on.
With several processes (DDP) each rank takes every world_size-th index of the same permutation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from steepest.data.stream import epoch_order, step_groups

Batch = tuple[torch.Tensor, torch.Tensor]


class DeviceLoader:
    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool | str = True,  # or "once": one permutation for every epoch
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        weights: torch.Tensor | None = None,
    ):
        self.x, self.y = x, y
        self.weights = weights  # per-sample sampling weights: each epoch draws n samples with replacement
        self.batch_size = min(batch_size, len(x))
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size

    @property
    def num_samples(self) -> int:
        """Samples in the whole training set (all ranks)."""
        return len(self.x)

    def __len__(self) -> int:
        """Micro-batches per epoch on this rank."""
        n = math.ceil(len(self.x) / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def steps_per_epoch(self, accumulate: int = 1) -> int:
        return math.ceil(len(self) / accumulate)

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices for `epoch` (see `steepest.data.stream.epoch_order`)."""
        return epoch_order(len(self.x), epoch, self.seed, shuffle=self.shuffle, rank=self.rank, world_size=self.world_size,
                           weights=self.weights).to(self.x.device, non_blocking=True)  # a plain copy to CUDA waits for the stream

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Micro-batches of `epoch`, starting at micro-batch index `start`."""
        perm = self.order(epoch)
        for i in range(start, len(self)):
            idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]

    def steps(self, epoch: int, accumulate: int = 1, start_step: int = 0) -> Iterator[list[Batch]]:
        """Groups of `accumulate` micro-batches, one per optimizer step (the last may be shorter)."""
        return step_groups(self.batches(epoch, start_step * accumulate), accumulate)


def eval_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterator[Batch]:
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]
