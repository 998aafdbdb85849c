"""HR-Bench 4K / 8K (HF ``DreamMr/HR-Bench``): a TSV or parquet file per split with columns
``index, question, answer, category (single|cross), A, B, C, D, cycle_category, image``
(base64). Data sources ``hrbench_4k`` / ``hrbench_8k``.

Each of the 200 questions appears 4 times with rotated options, one per ``cycle_category``.
The official score is **a per-cycle mean**: accuracy within each ``cycle_category``, then the
mean over cycles (equal to the mean over the 800 rows when the cycles are the same size). So
``hrbench_rows="all"`` (default) keeps all 800 rows, each its own record, with
``metadata.cycle_category`` and ``metadata.group`` (the question's index among the distinct
questions, in file order; a question is its text, its option set and its image). ``"unique"``
keeps the first row of each group (the first cycle) and skips the rest; that is 4x cheaper but
not the official protocol.

Like other VLMEvalKit TSVs, a row's ``image`` may hold just the ``index`` of an earlier row
whose image it shares. Such rows, and rows repeating an earlier row's image bytes, point at the
first row's stored copy, so each distinct image is decoded and checked once. A parquet
``image`` may also be raw bytes or an HF image struct ``{"bytes", "path"}``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow.parquet as pq


from .draft import (
    ConvertContext, Draft, ImageData, ImageRef, Item, Reject, Skip, SourceRows, answer_letter, safe_id,
    table_rows, text_field,
)
from .images import RowError
from ..schemas import problem_text

REQUIRED_COLUMNS = ("index", "question", "answer", "A", "B", "image")
#: A digit string this short is a reference to another row's index (VLMEvalKit convention).
_REFERENCE_MAX_CHARS = 64
_BATCH_ROWS = 8


def find_files(root: Path, variant: str) -> list[Path]:
    """``root`` if it is a file; else the parquet (preferred) or TSV files whose name has ``variant``."""
    if root.is_file():
        if root.suffix.lower() not in (".parquet", ".tsv"):
            raise ValueError(f"HR-Bench source {root} is not a .parquet or .tsv file")
        return [root]
    for suffix in (".parquet", ".tsv"):
        found = sorted(p for p in root.rglob(f"*{suffix}") if variant in p.name.lower())
        if found:
            return found
    raise FileNotFoundError(f"no HR-Bench {variant} .parquet or .tsv file (name containing {variant!r}) under {root}")


def convert(ctx: ConvertContext) -> SourceRows:
    variant = ctx.data_source.rsplit("_", 1)[-1]  # hrbench_4k -> 4k
    files = find_files(ctx.root, variant)
    for path in files:
        columns = _columns(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing HR-Bench columns {missing} (has {columns})")
    parquet_only = all(p.suffix.lower() == ".parquet" for p in files)
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in files) if parquet_only else None
    return SourceRows(_items(files, ctx), total=total)


def _columns(path: Path) -> list[str]:
    if path.suffix.lower() == ".parquet":
        return list(pq.read_schema(path).names)
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.readline().rstrip("\r\n").split("\t")


def _items(files: list[Path], ctx: ConvertContext) -> Iterator[Item]:
    unique = ctx.config.hrbench_rows == "unique"
    image_ids: dict[str, str] = {}  # row index -> identity of its image (for references)
    first_with_image: dict[str, str] = {}  # image identity -> index of the first row emitted with it
    groups: dict[tuple, int] = {}
    for path in files:
        for number, row in enumerate(table_rows(path, _BATCH_ROWS)):
            where = f"{path.name}[{number}]"
            index: Optional[str] = None
            try:
                index = text_field(row, "index")
                question = text_field(row, "question")
                options = _options(row)
                answer = answer_letter(text_field(row, "answer"), len(options))
                image, identity = _image(row.get("image"), image_ids)
            except RowError as exc:
                yield Reject(where, exc.code, str(exc), None if index is None else safe_id(ctx.data_source, index))
                continue
            image_ids.setdefault(index, identity)
            key = (question, tuple(sorted(options)), identity)
            repeat = key in groups
            group = groups.setdefault(key, len(groups))
            if unique and repeat:
                yield Skip(where, "hrbench_rows=unique: later cycle of a kept question")
                continue
            # Rows repeating an image point at the first copy: it is decoded and checked once.
            first = first_with_image.setdefault(identity, index)
            if first != index:
                image = ImageRef(f"index:{first}")
            elif image is None:
                raise AssertionError(f"{where}: reference without an earlier image")  # refs only point backwards
            metadata = {
                "index": index,
                "cycle_category": text_field(row, "cycle_category", required=False),
                "group": group,
                "source_file": path.name,
            }
            yield Draft(
                where=where,
                id=safe_id(ctx.data_source, index),
                question=question,
                answer=answer,
                answer_type="mc",
                image=image,
                problem=problem_text(question, options),
                options=options,
                category=text_field(row, "category", required=False),
                metadata=metadata,
                image_key=f"index:{index}",
            )


def _options(row: dict[str, Any]) -> list[str]:
    """Columns A, B, C, … in order, stopping at the first absent or empty one; all distinct
    (checked here, before later rows may be pointed at this row's image)."""
    options = []
    for letter in "ABCDEFGH":
        text = text_field(row, letter, required=False) if letter in row else ""
        if not text:
            break
        options.append(text)
    if len(options) < 2:
        raise RowError("missing_field", "fewer than two options in columns A, B, …")
    if len(set(options)) != len(options):
        raise RowError("bad_field", f"options repeat: {options}")
    return options


def _image(value: Any, image_ids: dict[str, str]) -> tuple[Optional[ImageData], str]:
    """The row's image data (None for a reference to an earlier row) and the image's identity
    (a hash of the encoded value, or the referenced row's identity)."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray)) and value:
        return ImageData(bytes(value)), hashlib.sha256(value).hexdigest()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(int(value))
    if not isinstance(value, str) or not value.strip():
        raise RowError("missing_field", "missing field 'image'")
    value = value.strip()
    if value in image_ids:
        return None, image_ids[value]
    if len(value) <= _REFERENCE_MAX_CHARS and value.isdigit():
        raise RowError("bad_image", f"image refers to index {value}, which no earlier row has")
    return ImageData(value), hashlib.sha256(value.encode("ascii", "replace")).hexdigest()
