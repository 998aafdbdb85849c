"""Training / validation prompts from unified benchmark parquets, and the seeded data order.

DATA is a ``<split>.parquet`` file or a folder holding one; image paths are relative to the
dataset folder's parent (``BASE_IMAGE_DIR``). The order is a seeded permutation per epoch, so the
position in the data is the small ``DataCursor`` (epoch, batch) stored in every checkpoint.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mini_o3.data.bench import BenchRecord, read_records
from mini_o3.task import EpisodeSample


@dataclass(frozen=True)
class Prompt:
    """One question and the absolute path of its image."""

    record: BenchRecord
    image: Path

    def episode(self, sample: int) -> EpisodeSample:
        return EpisodeSample(self.record.problem, self.image, f"{self.record.id}#{sample}")


def resolve_data(path: str | Path, split: str) -> Path:
    """``path`` itself when it is a file, else ``path/<split>.parquet``; errors name the input."""
    path = Path(path)
    if path.is_dir():
        candidate = path / f"{split}.parquet"
        if not candidate.is_file():
            raise FileNotFoundError(f"{split} data {str(path)!r}: folder has no {split}.parquet")
        return candidate
    if not path.is_file():
        raise FileNotFoundError(f"{split} data {str(path)!r} does not exist")
    if path.suffix != ".parquet":
        raise ValueError(f"{split} data {str(path)!r}: expected a unified .parquet file or a folder holding one")
    return path


def iter_prompts(paths: Sequence[str | Path], split: str) -> Iterator[Prompt]:
    """The rows of the given files, in file order, each with its one image resolved against the
    dataset's parent (``BASE_IMAGE_DIR``); a missing image raises naming the file and row. Both RL
    engines read their data through this."""
    for given in paths:
        file = resolve_data(given, split)
        base = file.parent.parent
        for i, record in enumerate(read_records(file)):
            if len(record.images) != 1:
                raise ValueError(f"{file}: row {i} ({record.id}) has {len(record.images)} images; episodes take exactly 1")
            image = base / record.images[0]
            if not image.is_file():
                raise FileNotFoundError(f"{file}: row {i} ({record.id}): image {str(image)!r} not found")
            yield Prompt(record, image)


def load_prompts(paths: Sequence[str | Path], split: str) -> list[Prompt]:
    """All rows of the given files, in file order; every image must exist."""
    if not paths:
        raise ValueError(f"no {split} data given")
    prompts = list(iter_prompts(paths, split))
    if not prompts:
        raise ValueError(f"{split} data {[str(p) for p in paths]} holds no rows")
    return prompts


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
