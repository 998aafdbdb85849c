"""What converters yield: a ``Draft`` (a row whose image is not stored yet), a ``Reject`` (bad
row, with the reason) or a ``Skip`` (a good row left out by a config filter), plus small
helpers converters share (field access with clear errors, option parsing, safe ids)."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Union

import pyarrow.parquet as pq

from ..schemas import AnswerType
from .images import RowError

if TYPE_CHECKING:
    from .prepare import BenchPrepConfig


@dataclass(frozen=True)
class ImageFile:
    """An image file named by a row, relative to one of ``bases`` (all inside the source root)."""

    path: str
    bases: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ImageData:
    """Encoded image bytes, or base64 text, carried by the row itself."""

    data: Union[bytes, str]


@dataclass(frozen=True)
class ImageRef:
    """The image of an earlier row (VLMEvalKit TSVs store a repeated image once)."""

    key: str


ImageSource = Union[ImageFile, ImageData, ImageRef]


@dataclass(frozen=True)
class Draft:
    """A converted row before its image is checked and stored."""

    where: str  # locator for error messages, e.g. "val.json[3]"
    id: str
    question: str
    answer: str
    answer_type: AnswerType
    image: ImageSource
    problem: Optional[str] = None  # None: built from question + options
    options: list[str] = field(default_factory=list)
    category: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    data_source: Optional[str] = None  # None: the benchmark's data source
    image_key: Optional[str] = None  # lets later rows refer to this row's image (ImageRef)


@dataclass(frozen=True)
class Reject:
    """A bad input row: where it is, why (``code`` + ``reason``) and the id it would have had."""

    where: str
    code: str
    reason: str
    id: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return {"where": self.where, "id": self.id, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class Skip:
    """A good row left out by a config filter (counted in the summary, not rejected)."""

    where: str
    reason: str  # e.g. "language zh", "duplicate cycle"


Item = Union[Draft, Reject, Skip]


@dataclass(frozen=True)
class ConvertContext:
    """What a converter gets: the local source root, the split and the config."""

    root: Path
    split: str
    data_source: str
    config: "BenchPrepConfig"


@dataclass(frozen=True)
class SourceRows:
    """A converter's output: rows in a deterministic order and their number when known."""

    items: Iterator[Item]
    total: Optional[int] = None


# -- helpers ---------------------------------------------------------------------------------


def natural_key(path: Path) -> list[Any]:
    """Sort key putting ``shard_2`` before ``shard_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def table_rows(path: Path, batch_rows: int = 8) -> Iterator[dict[str, Any]]:
    """The rows of a parquet file (``batch_rows`` decoded at a time) or a TSV with a header line,
    streamed; TSV fields may be as long as a base64 image."""
    if path.suffix.lower() == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()
        return
    old_limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle, delimiter="\t")
    finally:
        csv.field_size_limit(old_limit)


def load_json_list(path: Path) -> list[Any]:
    """A JSON file holding a list; a broken file raises ``ValueError`` naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    return data


_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(*parts: Any) -> str:
    """Join ``parts`` with ``_``, replacing characters outside ``[A-Za-z0-9._-]``."""
    text = "_".join(str(p) for p in parts)
    return _SAFE_ID.sub("_", text).strip("_.") or "row"


def text_field(row: dict[str, Any], key: str, *, required: bool = True) -> str:
    """``row[key]`` as a stripped string; missing / empty / non-scalar raises ``RowError``."""
    value = row.get(key) if isinstance(row, dict) else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if required:
            raise RowError("missing_field", f"missing field {key!r}")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError("bad_field", f"field {key!r} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if required and not text:
        raise RowError("missing_field", f"field {key!r} is empty")
    return text


def answer_letter(value: str, n_options: int) -> str:
    """Normalise "A", "(A)", "a." to "A" and check it names one of ``n_options`` options."""
    letter = value.strip().strip("().").strip().upper()
    if len(letter) != 1 or not "A" <= letter <= "Z" or ord(letter) - 65 >= n_options:
        raise RowError("bad_field", f"answer {value!r} is not an option letter A-{chr(64 + n_options)}")
    return letter


_OPTION_MARK = re.compile(r"(?:^|(?<=\s))\(([A-Z])\)\s+")


def split_options(text: str) -> tuple[str, list[str], str]:
    """Split "question\\n(A) x\\n(B) y\\ninstruction" (or inline "(A) x (B) y") into
    ``(question, options, trailer)``; the trailer is what follows the last option's line."""
    marks = list(_OPTION_MARK.finditer(text))
    start = next((i for i, m in enumerate(marks) if m.group(1) == "A"), None)
    if start is None:
        raise RowError("bad_field", "no '(A) ' option found in the text")
    run = [marks[start]]
    for mark in marks[start + 1:]:
        if ord(mark.group(1)) == ord(run[-1].group(1)) + 1:
            run.append(mark)
    if len(run) < 2:
        raise RowError("bad_field", "fewer than two options '(A) … (B) …' in the text")
    question = text[: run[0].start()].strip()
    options = [text[a.end(): b.start()].strip() for a, b in zip(run, run[1:], strict=False)]
    last, _, trailer = text[run[-1].end():].partition("\n")
    options.append(last.strip())
    if not question:
        raise RowError("missing_field", "the text has no question before the options")
    return question, options, trailer.strip()


#: "(A) x", "A. x", "A: x" and the full-width forms of MME-RealWorld-CN ("（A）x", "A．x", "A：x").
_CHOICE_PREFIX = re.compile(r"^[(（]?([A-Z])[)）.:．：]\s*")


def strip_choice_prefixes(choices: Any) -> list[str]:
    """``["(A) x", "(B) y"]`` (or ``"（A）x"``) → ``["x", "y"]``; the letters must run A, B, C, …"""
    if not isinstance(choices, (list, tuple)) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise RowError("bad_field", f"choices must be a list of two or more strings, got {choices!r:.80}")
    options = []
    for i, choice in enumerate(choices):
        match = _CHOICE_PREFIX.match(choice.strip())
        if not match or match.group(1) != chr(65 + i):
            raise RowError("bad_field", f"choice {i} {choice!r:.60} does not start with '({chr(65 + i)})'")
        options.append(choice.strip()[match.end():].strip())
    return options
