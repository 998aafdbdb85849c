"""``generate``: write a synthetic benchmark in the Mini-o3 layout, an oracle cold-start parquet
and a manifest.

Layout (``BASE_IMAGE_DIR`` = ``out_dir.parent``)::

    out_dir/train.json, val.json              Mini-o3 rows; images = "<out_dir.name>/data/<file>.png"
    out_dir/train.parquet, val.parquet        the same items as unified bench records (metadata = SampleMeta)
    out_dir/train_meta.jsonl, val_meta.jsonl  SampleMeta sidecars
    out_dir/data/*.png                        full-resolution images
    out_dir/coldstart/data/train-00000-of-00001.parquet   oracle trajectories (train split only)
    out_dir/manifest.json

Everything is built in a hidden sibling directory and renamed into place at the end, so a crash
never leaves a half-written dataset behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from pydantic import BaseModel, ConfigDict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ...task import TRAIN_LIMITS, EpisodeSample, Trajectory, run_episode
from ..bench.synthetic import record_from_sample
from ..bench.writer import write_split
from ...atomic import write_text_atomic
from ..schemas import COLDSTART_SCHEMA, MiniO3Row, SampleMeta, write_meta_jsonl
from .config import GENERATOR_VERSION, Strategy, SynthConfig
from .grid import GridOracle
from .oracle import OraclePolicy
from .questions import score_item
from .scene import SynthItem, make_item

SPLITS = ("train", "val")
COLDSTART_FILE = "coldstart/data/train-00000-of-00001.parquet"
#: Parquet row-group size of the cold-start file (rows hold whole images).
_ROW_GROUP = 16


class FileEntry(BaseModel):
    path: str
    bytes: int
    sha256: str


class SplitSummary(BaseModel):
    rows_file: str
    parquet_file: str
    meta_file: str
    count: int
    by_difficulty: dict[str, int]
    by_category: dict[str, int]
    by_answer_type: dict[str, int]
    image_bytes_mean: float


class ColdstartSummary(BaseModel):
    file: str
    rows: int
    questions: int
    by_strategy: dict[str, int]
    by_num_turns: dict[str, int]
    dropped: int


class SynthManifest(BaseModel):
    """What ``generate`` wrote (no timestamps, so equal inputs give an equal manifest)."""

    model_config = ConfigDict(extra="forbid")

    generator_version: str
    seed: int
    config: SynthConfig
    splits: dict[str, SplitSummary]
    coldstart: ColdstartSummary
    files: list[FileEntry]


def item_seed(seed: int, split: str, index: int) -> int:
    """The seed of item ``index`` of ``split``: items are independent of each other and of n."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split), index]).generate_state(1)[0])


def generate(
    config: Union[SynthConfig, dict[str, Any], None],
    out_dir: Union[str, os.PathLike],
    n_train: int,
    n_test: int,
    seed: int,
    *,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 2,
) -> SynthManifest:
    """Generate ``n_train`` + ``n_test`` items into ``out_dir`` (see the module doc).

    Refuses a non-empty ``out_dir`` unless ``overwrite``, which replaces it as a whole.
    ``workers`` threads draw and encode items (Pillow releases the GIL while encoding); the
    output does not depend on it.
    """
    config = config if isinstance(config, SynthConfig) else SynthConfig.model_validate(config or {})
    for name, value in (("n_train", n_train), ("n_test", n_test), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"out_dir {out_dir} exists and is not empty; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / "data").mkdir(parents=True)
        counts = {"train": n_train, "val": n_test}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            manifest = _write_all(config, staging, out_dir.name, counts, seed, progress, pool)
        _swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


@dataclass
class _Built:
    """One item as written: its row, sidecar, PNG size and cold-start records."""

    row: MiniO3Row
    meta: SampleMeta
    image_bytes: int
    coldstart: list[dict[str, Any]]
    strategies: list[Strategy]
    turns: list[int]
    dropped: int


def _build(config: SynthConfig, root: Path, name: str, split: str, index: int, *, seed: int) -> _Built:
    doc_id = f"synthetic_{split}_{index:05d}"
    file_name = f"{doc_id}.{config.image_format}"
    item = make_item(config, item_seed(seed, split, index), doc_id, f"{name}/data/{file_name}")
    data = png_bytes(item.image, config.png_compress_level)
    (root / "data" / file_name).write_bytes(data)  # the staging tree is renamed into place at the end
    built = _Built(item.row, item.meta, len(data), [], [], [], 0)
    if split == "train":
        _add_coldstart(built, item, config, index, seed)
    return built


def _write_all(
    config: SynthConfig, root: Path, name: str, counts: dict[str, int], seed: int, progress: bool, pool: ThreadPoolExecutor
) -> SynthManifest:
    splits: dict[str, SplitSummary] = {}
    coldstart = _ColdstartWriter(root / COLDSTART_FILE)
    bar = _progress() if progress else nullcontext()
    with bar as live, coldstart:
        for split in SPLITS:
            task = live.add_task(split, total=counts[split]) if live else None
            rows: list[MiniO3Row] = []
            metas: list[SampleMeta] = []
            image_bytes = 0
            build = partial(_build, config, root, name, split, seed=seed)
            for built in pool.map(build, range(counts[split])):
                rows.append(built.row)
                metas.append(built.meta)
                image_bytes += built.image_bytes
                coldstart.add(built)
                if live:
                    live.advance(task)
            write_split(root, split, [record_from_sample(row, meta) for row, meta in zip(rows, metas, strict=True)])
            write_meta_jsonl(root / f"{split}_meta.jsonl", metas)
            splits[split] = _summarise(split, metas, image_bytes)
    manifest = SynthManifest(
        generator_version=GENERATOR_VERSION,
        seed=seed,
        config=config,
        splits=splits,
        coldstart=coldstart.summary(),
        files=_file_entries(root),
    )
    write_text_atomic(root / "manifest.json", manifest.model_dump_json(indent=2) + "\n")
    return manifest


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]synthetic {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True,
    )


def png_bytes(image: Image.Image, level: int = 6) -> bytes:
    """Deterministic PNG encoding (no metadata)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def _summarise(split: str, metas: list[SampleMeta], image_bytes: int) -> SplitSummary:
    def count(values: list[str]) -> dict[str, int]:
        return dict(sorted(Counter(values).items()))

    return SplitSummary(
        rows_file=f"{split}.json",
        parquet_file=f"{split}.parquet",
        meta_file=f"{split}_meta.jsonl",
        count=len(metas),
        by_difficulty=count([m.difficulty for m in metas]),
        by_category=count([m.category for m in metas]),
        by_answer_type=count([m.answer_type for m in metas]),
        image_bytes_mean=round(image_bytes / len(metas), 1) if metas else 0.0,
    )


def _file_entries(root: Path) -> list[FileEntry]:
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        name = path.relative_to(root).as_posix()
        entries.append(FileEntry(path=name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
    return entries


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Rename ``staging`` to ``out_dir``; an existing ``out_dir`` is moved aside, then deleted."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out_dir, old)
    os.rename(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- cold-start ------------------------------------------------------------------------------


def oracle_rollouts(item: SynthItem, strategies: list[Strategy], rng_seed: int,
                    config: SynthConfig | None = None) -> list[tuple[Strategy, Trajectory]]:
    """Run the family's oracle with each strategy on ``item`` (training limits, with the config's
    ``coldstart_pixels``)."""
    config = config or SynthConfig()
    sample = EpisodeSample(problem=item.row.problem, image=item.image, sample_id=item.meta.doc_id)
    low, high = config.coldstart_pixels
    limits = TRAIN_LIMITS.with_(min_pixels=low, max_pixels=high)

    def oracle(strategy: Strategy):
        if config.family == "grid":
            return GridOracle(item.meta, config.grid, strategy)
        return OraclePolicy(item.meta, strategy, rng_seed)

    return [(s, run_episode(oracle(s), sample, limits)) for s in strategies]


def image_names(n: int) -> list[str]:
    """``original_image.png``, ``observation_1.png``, ... for a trajectory with ``n`` images."""
    return ["original_image.png"] + [f"observation_{i}.png" for i in range(1, n)]


def _add_coldstart(built: _Built, item: SynthItem, config: SynthConfig, sample_index: int, seed: int) -> None:
    """Oracle rollouts of a train item; keeps those that answer and score 1.0."""
    if config.coldstart_rollouts == 0:
        return
    rng = np.random.default_rng([seed, 7, sample_index])
    order = rng.permutation(len(config.coldstart_strategies))[: config.coldstart_rollouts]
    strategies = [config.coldstart_strategies[int(i)] for i in order]
    first_png: Optional[bytes] = None  # every rollout starts from the same model-facing image
    for strategy, traj in oracle_rollouts(item, strategies, item.meta.seed, config):
        if traj.termination != "answer" or score_item(item.meta, traj.answer) != 1.0:
            built.dropped += 1
            continue
        first_png = first_png or png_bytes(traj.images[0], config.png_compress_level)
        names = image_names(len(traj.images))
        images = [first_png] + [png_bytes(im, config.png_compress_level) for im in traj.images[1:]]
        built.coldstart.append(
            {
                "images": [{"bytes": data, "path": n} for data, n in zip(images, names, strict=True)],
                "image_names": names,
                "conversations": repr(traj.to_sharegpt()),
                "data_source": item.row.data_source,
                "sample_index": sample_index,
                "rollout_index": len(built.coldstart),
            }
        )
        built.strategies.append(strategy)
        built.turns.append(traj.num_turns)


class _ColdstartWriter:
    """Streams cold-start records into the parquet file, a row group at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.writer: Optional[pq.ParquetWriter] = None
        self.written = self.questions = self.dropped = 0
        self.by_strategy: Counter[str] = Counter()
        self.by_turns: Counter[str] = Counter()

    def __enter__(self) -> "_ColdstartWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._flush()
        if self.writer is not None:
            self.writer.close()

    def add(self, built: _Built) -> None:
        self.rows.extend(built.coldstart)
        self.questions += bool(built.coldstart)
        self.dropped += built.dropped
        self.by_strategy.update(built.strategies)
        self.by_turns.update(str(n) for n in built.turns)
        if len(self.rows) >= _ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, COLDSTART_SCHEMA)
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=COLDSTART_SCHEMA))
        self.written += len(self.rows)
        self.rows = []

    def summary(self) -> ColdstartSummary:
        return ColdstartSummary(
            file=COLDSTART_FILE,
            rows=self.written,
            questions=self.questions,
            by_strategy=dict(sorted(self.by_strategy.items())),
            by_num_turns=dict(sorted(self.by_turns.items())),
            dropped=self.dropped,
        )
