"""Record schemas of Mini-o3 data: the RL/eval JSON row, our per-sample sidecar, and the
cold-start parquet layout, plus validating readers and atomic writers.

* ``MiniO3Row``: one row of ``train.json`` / ``val.json`` (protocol §15.3); ``images`` are
  paths relative to ``BASE_IMAGE_DIR``.
* ``SampleMeta``: what a generator knows about a row (answer type, options, target box, ...),
  stored one JSON object a line next to the row file.
* ``COLDSTART_SCHEMA``: the arrow schema of ``Mini-o3/Mini-o3-Coldstart-Dataset`` parquet files
  (HF ``Image`` feature layout for ``images``; ``conversations`` is a Python-literal string).
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Literal, Optional, Union

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..atomic import write_text_atomic

#: Environment variable that row image paths are resolved against (reference default ./datasets).
BASE_IMAGE_DIR_ENV = "BASE_IMAGE_DIR"
#: Every ``problem`` starts with this: one image placeholder, then the question.
PROBLEM_PREFIX = "<image>\n"
SYNTHETIC_DATA_SOURCES = ("synthetic_easy", "synthetic_medium", "synthetic_hard", "synthetic_grid")

Difficulty = Literal["easy", "medium", "hard"]
Category = Literal["colour", "text", "shape", "position"]
AnswerType = Literal["mc", "free"]
BBox = tuple[int, int, int, int]
RelBBox = tuple[float, float, float, float]

_DATA_SOURCE_RE = re.compile(r"^[a-z0-9_]+$")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def option_letter_at(index: int) -> str:
    """``0 -> "A"``, ``1 -> "B"``, ..."""
    return _LETTERS[index]


# -- RL / eval row ---------------------------------------------------------------------------


class MiniO3Row(BaseModel):
    """One RL / eval row (protocol §15.3). Exactly one image, relative to ``BASE_IMAGE_DIR``."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    images: list[str] = Field(description="exactly one image path, relative to BASE_IMAGE_DIR")
    doc_id: str = Field(description="unique id of the row (trajectory directory names use it)")
    problem: str = Field(description='"<image>\\n" followed by the question')
    solution: str = Field(description="ground truth: an option letter or the free-form answer")
    data_source: str = Field(description="benchmark name; selects the reward function")

    @field_validator("images")
    @classmethod
    def _one_relative_image(cls, images: list[str]) -> list[str]:
        if len(images) != 1:
            raise ValueError(f"exactly one image per row is required, got {len(images)}")
        check_relative_path(images[0])
        return images

    @field_validator("doc_id")
    @classmethod
    def _doc_id(cls, doc_id: str) -> str:
        if not doc_id.strip() or any(c in doc_id for c in "/\\\n\r\t"):
            raise ValueError(f"doc_id must be non-empty without slashes or control characters, got {doc_id!r}")
        return doc_id

    @field_validator("problem")
    @classmethod
    def _problem(cls, problem: str) -> str:
        if not problem.startswith(PROBLEM_PREFIX):
            raise ValueError(f"problem must start with {PROBLEM_PREFIX!r}, got {problem[:40]!r}")
        if problem.count("<image>") != 1:
            raise ValueError(f"problem must hold exactly one '<image>', got {problem.count('<image>')}")
        if not problem[len(PROBLEM_PREFIX):].strip():
            raise ValueError("problem has no question after '<image>\\n'")
        return problem

    @field_validator("solution")
    @classmethod
    def _solution(cls, solution: str) -> str:
        if not solution.strip():
            raise ValueError("solution must not be empty")
        return solution

    @field_validator("data_source")
    @classmethod
    def _data_source(cls, data_source: str) -> str:
        if not _DATA_SOURCE_RE.match(data_source):
            raise ValueError(f"data_source must match {_DATA_SOURCE_RE.pattern}, got {data_source!r}")
        return data_source

    @property
    def question(self) -> str:
        return self.problem[len(PROBLEM_PREFIX):]

    def image_path(self, base_dir: Union[str, os.PathLike, None] = None) -> Path:
        """The image file: ``base_dir`` (default ``$BASE_IMAGE_DIR`` or ``./datasets``) / path."""
        base = base_dir if base_dir is not None else os.getenv(BASE_IMAGE_DIR_ENV, "./datasets")
        return Path(base) / self.images[0]


#: The instruction line after the options of a multiple-choice problem (the V* wording).
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def problem_text(question: str, options: list[str], instruction: str = MC_INSTRUCTION) -> str:
    """``"<image>\\n"`` + the question, then ``(A) …`` lines and ``instruction`` when there are options."""
    if not options:
        return f"{PROBLEM_PREFIX}{question}"
    listed = "\n".join(f"({option_letter_at(i)}) {text}" for i, text in enumerate(options))
    return f"{PROBLEM_PREFIX}{question}\n{listed}\n{instruction}"


def check_relative_path(path: str) -> str:
    """A POSIX path relative to a base directory that cannot escape it."""
    if not path or path.startswith("/") or "\\" in path or re.match(r"^[A-Za-z]:", path):
        raise ValueError(f"image path must be relative (POSIX, no drive), got {path!r}")
    if ".." in PurePosixPath(path).parts:
        raise ValueError(f"image path must not contain '..', got {path!r}")
    return path


# -- per-sample sidecar ----------------------------------------------------------------------


class LabeledBox(BaseModel):
    """A described box on the original image (absolute pixels, xyxy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    bbox: BBox


class SampleMeta(BaseModel):
    """What the generator knows about one row: the answer, options and where the target is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    doc_id: str
    image: str = Field(description="image path relative to BASE_IMAGE_DIR (as in the row)")
    question: str = Field(description="the question as asked (without '<image>\\n')")
    answer_type: AnswerType
    options: list[str] = Field(default_factory=list, description="option texts in letter order (mc only)")
    solution: str = Field(description="the row's solution: a letter (mc) or the answer text (free)")
    answer: str = Field(description="the answer text (for mc, the correct option's text)")
    category: Category
    difficulty: Difficulty
    target_description: str = Field(description="how the question names the target, e.g. 'the star'")
    target_bbox: BBox = Field(description="target box, absolute pixels xyxy on the original")
    target_bbox_rel: RelBBox = Field(description="target box relative to width/height")
    reference_bbox: Optional[BBox] = Field(default=None, description="second object box (position questions)")
    reference_description: Optional[str] = Field(default=None, description="how the question names the second object")
    lookalikes: list[LabeledBox] = Field(default_factory=list, description="distractors resembling the target")
    distractors: int = Field(0, ge=0, description="number of random distractors drawn")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    seed: int = Field(ge=0, description="item seed: regenerates this exact image and question")
    generator_version: str

    @model_validator(mode="after")
    def _consistent(self) -> "SampleMeta":
        check_relative_path(self.image)
        boxes = [("target_bbox", self.target_bbox)]
        if self.reference_bbox is not None:
            boxes.append(("reference_bbox", self.reference_bbox))
        boxes += [(f"lookalikes[{i}]", box.bbox) for i, box in enumerate(self.lookalikes)]
        for name, (x0, y0, x1, y1) in boxes:
            if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
                raise ValueError(f"{name} {[x0, y0, x1, y1]} is not a box inside {self.width}x{self.height}")
        expected = relative_box(self.target_bbox, self.width, self.height)
        if any(abs(a - b) > 1e-3 for a, b in zip(self.target_bbox_rel, expected, strict=True)):
            raise ValueError(f"target_bbox_rel {self.target_bbox_rel} does not match target_bbox {self.target_bbox}")
        if self.answer_type == "mc":
            if not 2 <= len(self.options) <= 26 or len(set(self.options)) != len(self.options):
                raise ValueError(f"mc needs 2-26 distinct options, got {self.options}")
            letters = _LETTERS[: len(self.options)]
            if self.solution not in letters:
                raise ValueError(f"mc solution must be one of {list(letters)}, got {self.solution!r}")
            if self.options[letters.index(self.solution)] != self.answer:
                raise ValueError(f"option {self.solution} is not the answer {self.answer!r}")
        else:
            if self.options:
                raise ValueError("free-form questions have no options")
            if self.solution != self.answer:
                raise ValueError(f"free-form solution {self.solution!r} must equal answer {self.answer!r}")
        return self


def relative_box(box: BBox, width: int, height: int, digits: int = 4) -> RelBBox:
    """Absolute xyxy pixels → fractions of the image size."""
    x0, y0, x1, y1 = box
    return (round(x0 / width, digits), round(y0 / height, digits), round(x1 / width, digits), round(y1 / height, digits))


# -- cold-start parquet ----------------------------------------------------------------------

ColdstartRole = Literal["system", "human", "gpt"]

#: HF ``datasets`` feature metadata, so ``load_dataset`` decodes ``images`` to PIL as upstream.
_HF_FEATURES = {
    "info": {
        "features": {
            "images": {"feature": {"_type": "Image"}, "length": -1, "_type": "Sequence"},
            "image_names": {"feature": {"dtype": "string", "_type": "Value"}, "length": -1, "_type": "Sequence"},
            "conversations": {"dtype": "string", "_type": "Value"},
            "data_source": {"dtype": "string", "_type": "Value"},
            "sample_index": {"dtype": "int64", "_type": "Value"},
            "rollout_index": {"dtype": "int64", "_type": "Value"},
        }
    }
}

#: One image in the HF ``Image`` feature layout.
_HF_IMAGE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
#: Arrow schema of ``Mini-o3/Mini-o3-Coldstart-Dataset`` parquet files. List items are named
#: ``element`` (the Parquet-compliant name pyarrow writes and reads back); ``Schema.equals``
#: ignores item names unless ``check_metadata=True``.
COLDSTART_SCHEMA = pa.schema(
    [
        pa.field("images", pa.list_(pa.field("element", _HF_IMAGE))),
        pa.field("image_names", pa.list_(pa.field("element", pa.string()))),
        pa.field("conversations", pa.string()),
        pa.field("data_source", pa.string()),
        pa.field("sample_index", pa.int64()),
        pa.field("rollout_index", pa.int64()),
    ],
    metadata={"huggingface": json.dumps(_HF_FEATURES)},
)


class ColdstartTurn(BaseModel):
    """One sharegpt turn of a cold-start conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_: ColdstartRole = Field(alias="from")
    value: str


def parse_coldstart_conversations(text: str, n_images: Optional[int] = None) -> list[ColdstartTurn]:
    """Parse a ``conversations`` string safely (``ast.literal_eval``, never ``eval``) and check it.

    Checks: an optional leading system turn, then human/gpt alternating, starting with human and
    ending with gpt; with ``n_images``, the ``<image>`` placeholders must number ``n_images``.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"conversations is not a Python literal: {exc}") from None
    if not isinstance(value, list):
        raise ValueError(f"conversations must be a list, got {type(value).__name__}")
    try:
        turns = [ColdstartTurn.model_validate(item) for item in value]
    except ValidationError as exc:
        raise ValueError(f"bad conversation turn: {exc}") from None
    check_sharegpt_turns([turn.from_ for turn in turns], [turn.value for turn in turns], n_images)
    return turns


def check_sharegpt_turns(
    roles: list[str],
    texts: list[str],
    n_images: Optional[int] = None,
    *,
    system: str = "system",
    user: str = "human",
    assistant: str = "gpt",
) -> None:
    """LLaMA-Factory's sharegpt rule: an optional leading system turn, then user/assistant
    alternating, starting with user and ending with assistant; with ``n_images``, the ``<image>``
    placeholders must number ``n_images``. Raises ``ValueError`` saying what is wrong."""
    body = roles[1:] if roles and roles[0] == system else roles
    if not body or len(body) % 2 or any(r != (user if i % 2 == 0 else assistant) for i, r in enumerate(body)):
        raise ValueError(f"roles must be [{system}] then {user}/{assistant} alternating, ending with {assistant}; got {roles}")
    if n_images is not None:
        found = sum(text.count("<image>") for text in texts)
        if found != n_images:
            raise ValueError(f"{found} '<image>' placeholders for {n_images} images")


def _validated_rows(rows: Iterable[Union[MiniO3Row, dict[str, Any]]], where: str) -> list[MiniO3Row]:
    out: list[MiniO3Row] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        try:
            model = row if isinstance(row, MiniO3Row) else MiniO3Row.model_validate(row)
        except ValidationError as exc:
            raise ValueError(f"{where}: row {i} is invalid: {exc}") from None
        if model.doc_id in seen:
            raise ValueError(f"{where}: row {i} repeats doc_id {model.doc_id!r} of row {seen[model.doc_id]}")
        seen[model.doc_id] = i
        out.append(model)
    return out


def read_rows(path: Union[str, os.PathLike]) -> list[MiniO3Row]:
    """Read and validate a row file (a JSON list); errors name the file and the row."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    return _validated_rows(data, str(path))


def write_rows(path: Union[str, os.PathLike], rows: Iterable[Union[MiniO3Row, dict[str, Any]]]) -> list[MiniO3Row]:
    """Validate ``rows`` and write them atomically as a JSON list (indent=2); returns them."""
    models = _validated_rows(rows, str(path))
    text = json.dumps([m.model_dump(mode="json") for m in models], indent=2, ensure_ascii=False)
    write_text_atomic(path, text + "\n")
    return models


def read_meta_jsonl(path: Union[str, os.PathLike]) -> list[SampleMeta]:
    """Read a ``SampleMeta`` JSON-lines file; errors name the file and the line."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                out.append(SampleMeta.model_validate_json(line))
            except ValidationError as exc:
                raise ValueError(f"{path}:{number}: invalid sample meta: {exc}") from None
    return out


def write_meta_jsonl(path: Union[str, os.PathLike], metas: Iterable[SampleMeta]) -> None:
    """Write ``SampleMeta`` records atomically, one JSON object a line."""
    lines = [meta.model_dump_json() + "\n" for meta in metas]
    write_text_atomic(path, "".join(lines))
