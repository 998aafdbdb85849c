"""The reference engine's seeded data order: a permutation per epoch, so the position in the
data is the small ``DataCursor`` (epoch, batch) stored in every checkpoint."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class DataCursor:
    """The next batch to draw: batch ``batch`` of epoch ``epoch``'s permutation."""

    epoch: int = 0
    batch: int = 0


class DataOrder:
    """Batches of ``batch_size`` prompt indices from a seeded per-epoch permutation (last partial
    batch of an epoch dropped, as verl's ``drop_last``)."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True) -> None:
        if batch_size > size:
            raise ValueError(f"train_batch_size ({batch_size}) exceeds the {size} training prompts")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.batch_size

    def permutation(self, epoch: int) -> list[int]:
        order = list(range(self.size))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, cursor: DataCursor) -> tuple[list[int], DataCursor]:
        """The batch at ``cursor`` and the cursor after it."""
        start = cursor.batch * self.batch_size
        indices = self.permutation(cursor.epoch)[start:start + self.batch_size]
        following = cursor.batch + 1
        nxt = DataCursor(cursor.epoch, following) if following < self.batches_per_epoch else DataCursor(cursor.epoch + 1, 0)
        return indices, nxt
