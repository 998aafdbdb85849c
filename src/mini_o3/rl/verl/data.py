"""Unified benchmark parquet (``mini_o3.data.bench``) → verl's RL parquet.

One verl row per ``BenchRecord``:

* ``prompt``: the prompt set's system message + the user ``problem`` (``<image>\\n`` + question);
* ``images``: ``[{"bytes": original image bytes}]`` (full resolution; the agent loop resizes it with
  the task kit, so the data is self-contained on every Ray node);
* ``data_source``, ``ability`` (``visual_search``), ``reward_model.ground_truth`` (the answer);
* ``agent_name``: ``minio3_train`` for training rows, ``minio3_val`` for validation rows;
* ``extra_info``: ``index`` (row number), ``split`` and ``record`` (the whole ``BenchRecord``: the
  reward function's rule scorer and judge read it, the agent loop its ``problem``).

Rows are streamed to the output in row groups, so memory stays bounded by one group's images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mini_o3.data.bench import BenchRecord
from mini_o3.rl.data import iter_prompts
from mini_o3.task import DEFAULT_PROMPT_SET, get_prompt_set

from .names import TRAIN_AGENT, VAL_AGENT

ABILITY = "visual_search"
ROW_GROUP = 64
_STR = pa.string()
#: The verl parquet schema (explicit: free-form rows have empty option lists).
SCHEMA = pa.schema([
    ("data_source", _STR),
    ("prompt", pa.list_(pa.struct([("role", _STR), ("content", _STR)]))),
    ("images", pa.list_(pa.struct([("bytes", pa.binary())]))),
    ("ability", _STR),
    ("reward_model", pa.struct([("style", _STR), ("ground_truth", _STR)])),
    ("agent_name", _STR),
    ("extra_info", pa.struct([
        ("index", pa.int64()), ("split", _STR),
        ("record", pa.struct([(name, pa.list_(_STR) if name in ("options", "images") else _STR)
                              for name in BenchRecord.model_fields])),
    ])),
])


def verl_row(record: BenchRecord, image_bytes: bytes, *, index: int, split: str, system: str) -> dict[str, Any]:
    """The verl row of one record (see the module doc)."""
    return {
        "data_source": record.data_source,
        "prompt": [{"role": "system", "content": system}, {"role": "user", "content": record.problem}],
        "images": [{"bytes": image_bytes}],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": record.answer},
        "agent_name": TRAIN_AGENT if split == "train" else VAL_AGENT,
        "extra_info": {"index": index, "split": split, "record": record.model_dump()},
    }


def convert(
    sources: Sequence[str | Path],
    out_file: Path,
    split: str,
    *,
    prompt_set: str = DEFAULT_PROMPT_SET,
    on_row: Callable[[int], None] | None = None,
) -> int:
    """Convert ``sources`` (unified parquet files or folders holding ``<split>.parquet``) into one
    verl parquet at ``out_file`` (written atomically); returns the row count."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    if not sources:
        raise ValueError(f"no {split} data given")
    system = get_prompt_set(prompt_set).system
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    writer: pq.ParquetWriter | None = None
    rows: list[dict[str, Any]] = []
    count = 0
    try:
        for prompt in iter_prompts(sources, split):
            try:
                data = prompt.image.read_bytes()
            except OSError as exc:
                raise FileNotFoundError(f"{prompt.record.id}: cannot read image {str(prompt.image)!r}: {exc}") from None
            rows.append(verl_row(prompt.record, data, index=count, split=split, system=system))
            count += 1
            if on_row:
                on_row(count)
            if len(rows) >= ROW_GROUP:
                writer = _flush(writer, rows, tmp)
        if rows or writer is None:
            writer = _flush(writer, rows, tmp)
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"{split} data {[str(s) for s in sources]} holds no rows")
    os.replace(tmp, out_file)
    return count


def _flush(writer: pq.ParquetWriter | None, rows: list[dict[str, Any]], path: Path) -> pq.ParquetWriter:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    if writer is None:
        writer = pq.ParquetWriter(path, SCHEMA)
    writer.write_table(table)
    rows.clear()
    return writer
