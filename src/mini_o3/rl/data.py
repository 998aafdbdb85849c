"""Training / validation prompts from unified benchmark parquets (both RL engines read them here).

DATA is a ``<split>.parquet`` file or a folder holding one; image paths are relative to the
dataset folder's parent (``BASE_IMAGE_DIR``).
"""

from __future__ import annotations

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
