"""``prepare_bench``: turn one benchmark's source (hub id, folder or file) into the unified layout.

Output (``BASE_IMAGE_DIR`` = ``out_dir.parent``)::

    out_dir/<split>.parquet   BenchRecord rows (BENCH_SCHEMA); split = train for *_train, else val (synthetic: both)
    out_dir/<split>.json      the same rows in the Mini-o3 layout (images, doc_id, problem, solution, data_source)
    out_dir/data/<sha256[:24]>.<ext>   the source's image bytes, unchanged, one file per distinct image
    out_dir/rejected.jsonl    one line per bad input row: where, id, code, reason
    out_dir/summary.json      BenchPrepSummary

Multiple-choice problems (V*, HR-Bench, MME-RealWorld) all read ``"<image>\n" + question``,
``(A) …`` lines and ``schemas.MC_INSTRUCTION`` (the V* wording), instead of each
benchmark's own prompt (MME-RealWorld's ends in "The best answer is:", which fights the
``<answer>`` tags); ``question``, ``options`` and ``metadata`` keep what is needed to rebuild an
official prompt. VisualProbe / DeepEyes problems are kept exactly as released.

Bad rows (missing fields, unsafe or missing image paths, corrupt or oversized images, duplicate
ids) are rejected one by one; good rows are kept. Nothing is written outside ``out_dir``: image
paths are resolved inside the source root, stored names are content hashes, and every file is
written to a temporary name in its folder and renamed. Same source, name and config → the same
bytes in every file (``summary.json`` differs only in ``seconds``), whatever ``workers`` is.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ...atomic import write_text_atomic
from ..schemas import PROBLEM_PREFIX, check_relative_path
from ..sources import resolve_source
from .draft import ConvertContext, Draft, ImageData, ImageFile, ImageRef, Item, Reject, Skip
from .images import RowError, StoredImage, decode_base64, resolve_inside, store_image
from .registry import Split, data_source_for, get_spec
from .schema import BenchRecord, error_code, short_error
from .writer import write_jsonl, write_split

#: Rows handed to the worker pool at a time (bounds memory for base64 sources).
_CHUNK = 32
_PENDING_IMAGE = "pending"


class BenchPrepConfig(BaseModel):
    """Settings of ``prepare_bench``; the defaults reproduce the official benchmark sizes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: Optional[int] = Field(
        None, ge=1, description="keep at most this many rows, the first in source order; None = all"
    )
    seed: int = Field(0, ge=0, description="seed of deterministic shuffles (V* raw per-image options)")
    split: Optional[Split] = Field(
        None, description="output split (file name); None = the benchmark's default. Synthetic: also the split "
        "read; None = every split of the folder (train and val)"
    )
    hrbench_rows: Literal["all", "unique"] = Field(
        "all", description="HR-Bench: all 800 rows (4 option cycles, the official protocol) or the first cycle only"
    )
    mme_realworld_variant: Literal["full", "lite"] = Field(
        "full", description="MME-RealWorld: full set (data source mme_realworld) or Lite (mme_realworld_lite)"
    )
    languages: tuple[Literal["en", "zh"], ...] = Field(
        ("en",), min_length=1, description="MME-RealWorld languages kept (the full set has ~5.9K Chinese items)"
    )
    workers: int = Field(
        4, ge=1, le=64, description="threads that read, check and copy images (the output does not depend on it)"
    )
    max_pixels: int = Field(
        100_000_000, ge=1, description="reject images whose header says more pixels (PIL refuses > ~179 MP anyway)"
    )
    overwrite: bool = Field(False, description="replace the outputs of an earlier run in a non-empty out_dir")


class BenchPrepSummary(BaseModel):
    """What ``prepare_bench`` did; also written to ``out_dir/summary.json``."""

    name: str
    source: str
    dataset: str = Field(description="out_dir's name: the first component of every image path")
    split: str
    rows_in: int = Field(description="input rows seen (kept + rejected + skipped)")
    rows_out: int
    rejected: int
    skipped: int = Field(description="good rows left out by the config (language, hrbench_rows)")
    by_category: dict[str, int]
    by_data_source: dict[str, int]
    by_answer_type: dict[str, int]
    rejected_by_code: dict[str, int]
    skipped_by_reason: dict[str, int]
    images: int = Field(description="distinct image files in data/")
    image_bytes: int
    files: list[str]
    config: BenchPrepConfig
    seconds: float


def prepare_bench(
    name: str,
    source: str,
    out_dir: Path,
    config: BenchPrepConfig = BenchPrepConfig(),
    progress: bool = True,
) -> BenchPrepSummary:
    """Prepare benchmark ``name`` (a key of ``BENCHMARKS``) from ``source`` into ``out_dir``.

    ``source`` is a hub dataset id, a folder or a file. Raises ``ValueError`` /
    ``FileNotFoundError`` / ``FileExistsError`` naming the input for problems with the source as a
    whole; single bad rows go to ``rejected.jsonl``.
    """
    started = time.perf_counter()
    spec = get_spec(name)
    if not isinstance(config, BenchPrepConfig):
        config = BenchPrepConfig.model_validate(config)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, config.overwrite)
    root = resolve_source(str(source), allow_patterns=spec.allow_patterns).resolve()
    _check_no_overlap(root, out_dir)
    _clear_outputs(out_dir)
    splits = _splits(spec.name, config.split or spec.split, config.split is None, root)

    runs: list[_Run] = []
    files: list[str] = []
    for split in splits:
        ctx = ConvertContext(root, split, data_source_for(spec, config.mme_realworld_variant), config)
        rows = spec.convert(ctx)
        run = _Run(out_dir, ctx)
        bar = _progress() if progress else nullcontext()
        with ThreadPoolExecutor(max_workers=config.workers) as pool, bar as live:
            task = live.add_task(f"{name} {split}" if len(splits) > 1 else name, total=rows.total) if live else None
            advance = (lambda n: live.advance(task, n)) if live else (lambda n: None)
            run.consume(rows.items, pool, advance)
        parquet, rows_file = write_split(out_dir, split, run.records)
        files += [parquet.name, rows_file.name]
        runs.append(run)

    records = [r for run in runs for r in run.records]
    rejects = [r for run in runs for r in run.rejects]
    skipped = sum((run.skipped for run in runs), Counter())
    write_jsonl(out_dir / "rejected.jsonl", [r.as_dict() for r in rejects])
    images = sorted(p for p in (out_dir / "data").iterdir() if p.is_file())
    summary = BenchPrepSummary(
        name=name,
        source=str(source),
        dataset=out_dir.name,
        split=",".join(splits),
        rows_in=sum(run.rows_in for run in runs),
        rows_out=len(records),
        rejected=len(rejects),
        skipped=sum(skipped.values()),
        by_category=_count(r.category for r in records),
        by_data_source=_count(r.data_source for r in records),
        by_answer_type=_count(r.answer_type for r in records),
        rejected_by_code=_count(r.code for r in rejects),
        skipped_by_reason=dict(sorted(skipped.items())),
        images=len(images),
        image_bytes=sum(p.stat().st_size for p in images),
        files=[*files, "rejected.jsonl", "summary.json", "data/"],
        config=config,
        seconds=round(time.perf_counter() - started, 3),
    )
    write_text_atomic(out_dir / "summary.json", summary.model_dump_json(indent=2) + "\n")
    return summary


def _splits(name: str, split: str, default: bool, root: Path) -> list[str]:
    """The splits to write: ``split``, except for a synthetic folder read without a split set,
    which is re-emitted whole (every one of train / val it holds: RL trains on one, evaluates on
    the other)."""
    if name == "synthetic" and default and root.is_dir():
        present = [s for s in ("train", "val") if (root / f"{s}.parquet").is_file()]
        return present or [split]
    return [split]


# -- the run ---------------------------------------------------------------------------------


class _Run:
    """Turns converter items into records, in source order, storing images with a thread pool."""

    def __init__(self, out_dir: Path, ctx: ConvertContext) -> None:
        self.data_dir = out_dir / "data"
        self.dataset = out_dir.name
        self.ctx = ctx
        self.records: list[BenchRecord] = []
        self.rejects: list[Reject] = []
        self.skipped: Counter[str] = Counter()
        self.rows_in = 0
        self.ids: set[str] = set()
        self.images_by_key: dict[str, StoredImage] = {}
        self.image_errors: dict[str, RowError] = {}  # image_key -> why that row's image failed

    def consume(self, items: Iterator[Item], pool: ThreadPoolExecutor, advance) -> None:
        limit = self.ctx.config.limit
        while limit is None or len(self.records) < limit:
            # Never take more rows than can still be kept, so no image is stored for a dropped row.
            room = _CHUNK if limit is None else min(_CHUNK, limit - len(self.records))
            chunk = list(islice(items, room))
            if not chunk:
                break
            self._chunk(chunk, pool)
            advance(len(chunk))

    def _chunk(self, chunk: list[Item], pool: ThreadPoolExecutor) -> None:
        jobs: list[tuple[Item, Optional[BenchRecord], Optional[Future]]] = []
        for item in chunk:
            self.rows_in += 1
            if not isinstance(item, Draft):
                jobs.append((item, None, None))
                continue
            try:
                pending = self._pending(item)
            except RowError as exc:
                jobs.append((Reject(item.where, exc.code, str(exc), item.id), None, None))
                continue
            future = None if isinstance(item.image, ImageRef) else pool.submit(self._store, item)
            jobs.append((item, pending, future))
        for item, pending, future in jobs:
            if isinstance(item, Reject):
                self.rejects.append(item)
            elif isinstance(item, Skip):
                self.skipped[item.reason] += 1
            elif isinstance(item, Draft) and pending is not None:
                self._finish(item, pending, future)

    def _pending(self, draft: Draft) -> BenchRecord:
        """The draft's record with a placeholder image; checks everything but the image."""
        if draft.id in self.ids:
            raise RowError("duplicate_id", f"id {draft.id!r} repeats an earlier row's")
        self.ids.add(draft.id)
        try:
            return BenchRecord(
                id=draft.id,
                data_source=draft.data_source or self.ctx.data_source,
                problem=draft.problem if draft.problem is not None else PROBLEM_PREFIX + draft.question,
                question=draft.question,
                answer=draft.answer,
                answer_type=draft.answer_type,
                options=draft.options,
                images=[f"{self.dataset}/data/{_PENDING_IMAGE}"],
                category=draft.category,
                metadata=draft.metadata,
            )
        except ValidationError as exc:
            raise RowError(error_code(exc), short_error(exc)) from None

    def _store(self, draft: Draft) -> StoredImage:
        image = draft.image
        if isinstance(image, ImageFile):
            root = self.ctx.root if self.ctx.root.is_dir() else self.ctx.root.parent
            path = resolve_inside(root, image.path, image.bases)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise RowError("bad_image", f"cannot read image {image.path!r}: {exc.strerror}") from None
        elif isinstance(image, ImageData):
            data = decode_base64(image.data) if isinstance(image.data, str) else image.data
        else:  # pragma: no cover - ImageRef never reaches the pool
            raise TypeError(f"cannot store {image!r}")
        return store_image(data, self.data_dir, self.dataset, self.ctx.config.max_pixels)

    def _finish(self, draft: Draft, pending: BenchRecord, future: Optional[Future]) -> None:
        try:
            if isinstance(draft.image, ImageRef):
                stored = self._referenced(draft.image.key)
            else:
                assert future is not None
                stored = future.result()
        except RowError as exc:
            if draft.image_key:
                self.image_errors[draft.image_key] = exc
            self.rejects.append(Reject(draft.where, exc.code, str(exc), draft.id))
            return
        if draft.image_key:
            self.images_by_key[draft.image_key] = stored
        self.records.append(pending.model_copy(update={"images": [stored.path]}))

    def _referenced(self, key: str) -> StoredImage:
        """The stored image of an earlier row, or that row's image error."""
        if key in self.images_by_key:
            return self.images_by_key[key]
        if key in self.image_errors:
            error = self.image_errors[key]
            raise RowError(error.code, f"shared image of {key}: {error}")
        raise RowError("bad_image", f"image refers to {key}, which has no stored image")


# -- out_dir ---------------------------------------------------------------------------------

_OUTPUT_FILES = ("train.parquet", "train.json", "val.parquet", "val.json", "rejected.jsonl", "summary.json")


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    check_relative_path(f"{out_dir.name}/data/x")  # the name prefixes every image path
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"out_dir {out_dir} exists and is not empty; pass overwrite=True to replace its outputs")
    if (out_dir / "data").is_symlink():
        raise ValueError(f"{out_dir / 'data'} is a symlink; refusing to write images through it")


def _check_no_overlap(root: Path, out_dir: Path) -> None:
    out = out_dir.resolve()
    if out == root or root in out.parents or out in root.parents:
        raise ValueError(f"out_dir {out_dir} overlaps the source {root}; choose a separate folder")


def _clear_outputs(out_dir: Path) -> None:
    """Remove an earlier run's outputs (only the files this module writes), then make data/."""
    for name in _OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)
    data = out_dir / "data"
    if data.is_dir():
        shutil.rmtree(data)
    elif data.exists():
        data.unlink()
    data.mkdir(parents=True)


def _count(values: Iterator[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]prepare {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True,
    )
