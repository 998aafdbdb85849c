"""``BenchRecord``: one benchmark item in the unified layout, its arrow schema, and readers.

A record holds what the model sees (``problem``), what scorers need (``answer``, ``answer_type``,
``options``), where the image is (``images``, relative to ``BASE_IMAGE_DIR``) and everything
else the source knew (``metadata``, a JSON object string). ``to_row`` gives the Mini-o3
``train.json`` / ``val.json`` row of a record.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Union

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ...task import score_answer, score_mme_realworld
from ..schemas import AnswerType, MiniO3Row, check_relative_path, option_letter_at

#: Bumped when the columns or their meaning change.
BENCH_SCHEMA_VERSION = "1"

#: Arrow schema of ``<split>.parquet`` (column order as written).
BENCH_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("data_source", pa.string(), nullable=False),
        pa.field("problem", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("answer_type", pa.string(), nullable=False),
        pa.field("options", pa.list_(pa.field("element", pa.string())), nullable=False),
        pa.field("images", pa.list_(pa.field("element", pa.string())), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),
    ],
    metadata={"mini_o3.bench_schema": BENCH_SCHEMA_VERSION},
)


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: equal objects give equal strings."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class BenchRecord(BaseModel):
    """One benchmark item (see the module doc). ``metadata`` accepts a dict and stores it as
    canonical JSON; ``meta`` parses it back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="unique id within the dataset; the Mini-o3 doc_id")
    data_source: str = Field(description="benchmark name the evaluator routes on, e.g. vstar_bench")
    problem: str = Field(description='"<image>\\n" + the text the model sees (options and instruction for mc)')
    question: str = Field(description="the question as the source wrote it, without options")
    answer: str = Field(description="the option letter (mc) or the answer text (free)")
    answer_type: AnswerType
    options: list[str] = Field(default_factory=list, description="option texts in letter order, no '(A)' prefix")
    images: list[str] = Field(description="image paths relative to BASE_IMAGE_DIR")
    category: str = Field("", description="the source's category (sub-task)")
    metadata: str = Field("{}", description="a JSON object: source ids, permutation, bbox, ...")

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> str:
        if isinstance(value, dict):
            return canonical_json(value)
        if not isinstance(value, str):
            raise ValueError(f"metadata must be a dict or a JSON object string, got {type(value).__name__}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"metadata is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"metadata must be a JSON object, got {type(parsed).__name__}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "BenchRecord":
        # The Mini-o3 row rules cover id, problem, answer, data_source and the first image.
        to_row(self)
        for path in self.images:
            check_relative_path(path)
        if self.answer_type == "mc":
            if not 2 <= len(self.options) <= 26 or len(set(self.options)) != len(self.options):
                raise ValueError(f"mc needs 2-26 distinct options, got {self.options}")
            if any(not option.strip() for option in self.options):
                raise ValueError(f"mc options must not be empty, got {self.options}")
            letters = [option_letter_at(i) for i in range(len(self.options))]
            if self.answer not in letters:
                raise ValueError(f"mc answer must be one of {letters}, got {self.answer!r}")
        elif self.options:
            raise ValueError("free-form questions have no options")
        return self

    @property
    def meta(self) -> dict[str, Any]:
        return json.loads(self.metadata)

    @property
    def is_mme(self) -> bool:
        """An MME-RealWorld item carrying its official choices (scored by the official letter rule)."""
        from .registry import scorer_for  # the registry imports the converters, which import this module

        return scorer_for(self.data_source) == "mme_realworld" and bool(self.meta.get("choices"))

    def rule_score(self, prediction: Optional[str]) -> float:
        """The task kit's rule scorer for this item: MME-RealWorld's letter rule on the answer span,
        else the mc letter rule or normalised free-form match."""
        if self.is_mme:
            return score_mme_realworld(prediction, self.answer, self.meta["choices"])
        return score_answer(prediction, self.answer, self.answer_type, self.options)


def to_row(record: BenchRecord) -> MiniO3Row:
    """The Mini-o3 row of ``record``: ``solution`` = answer, ``doc_id`` = id, one image."""
    try:
        return MiniO3Row(
            images=record.images,
            doc_id=record.id,
            problem=record.problem,
            solution=record.answer,
            data_source=record.data_source,
        )
    except ValidationError as exc:
        raise ValueError(short_error(exc)) from None


def error_code(exc: ValidationError) -> str:
    """``missing_field`` when a required field is absent, else ``bad_field``."""
    return "missing_field" if any(e["type"] == "missing" for e in exc.errors()) else "bad_field"


def short_error(exc: ValidationError) -> str:
    """One line per pydantic error: ``field: message``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "record"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def records_table(records: list[BenchRecord]) -> pa.Table:
    """The records as an arrow table with ``BENCH_SCHEMA``."""
    return pa.Table.from_pylist([r.model_dump() for r in records], schema=BENCH_SCHEMA)


def read_records(path: Union[str, os.PathLike]) -> list[BenchRecord]:
    """Read and validate a ``<split>.parquet``; errors name the file and the row."""
    schema = pq.read_schema(path)
    if schema.names != BENCH_SCHEMA.names:
        raise ValueError(f"{path}: columns {schema.names} are not the bench columns {BENCH_SCHEMA.names}")
    out = []
    for i, row in enumerate(pq.read_table(path).to_pylist()):
        try:
            out.append(BenchRecord.model_validate(row))
        except ValidationError as exc:
            raise ValueError(f"{path}: row {i} is invalid: {short_error(exc)}") from None
    return out
