"""MME-RealWorld, full or Lite (``BenchPrepConfig.mme_realworld_variant``; data sources
``mme_realworld`` / ``mme_realworld_lite``). 5-way multiple choice, scored by the official
letter rule (``mini_o3.task.scoring.score_mme_realworld(pred, answer, metadata["choices"])``).

Every published layout converts:

* **JSON + images** (HF ``yifanzhang114/MME-RealWorld``, images unzipped; ``MME_RealWorld.json``
  and ``MME_RealWorld_CN.json``): items with ``Question_id``, ``Image`` (path relative to the JSON
  file or the source root), ``Text``, ``Answer choices`` (``["(A) …", …, "(E) …"]``),
  ``Ground truth`` (letter), ``Task``, ``Subtask``, ``Category``, ``Question Type``.
* **Base64 JSON shards** (HF ``yifanzhang114/MME-RealWorld-Base64``:
  ``MME-RealWorld/MME_RealWorld_base64_{0..8}.json``, ``MME-RealWorld-CN/MME_RealWorld_CN_base64_{0,1}.json``,
  ~4 GB each): items with ``index``, ``image`` (base64), ``question``, ``multi-choice options``
  (list), ``answer``, ``category`` (``Task/Subtask``), ``l2-category``, as the official
  ``evaluation/download_and_prepare_prompt.py`` and VLMEvalKit's ``MMERealWorld.load_data`` read
  them. Shards are streamed item by item (``jsonstream.iter_json_array``), never loaded whole.
* **Lite TSV** (``mme_realworld_lite.tsv`` in the Base64 repo; VLMEvalKit ``MME-RealWorld-Lite``):
  the same columns, ``multi-choice options`` a Python list literal (read with
  ``ast.literal_eval``, never ``eval``) or VLMEvalKit's own ``"The choices are listed below:\\n(A) …"``
  text; streamed row by row. A short digit ``image`` is VLMEvalKit's reference to an earlier row.
* **lmms-eval parquet** (``yifanzhang114/MME-RealWorld-Lmms-eval`` / ``…-lite-lmms-eval`` /
  ``…-CN-Lmms-eval``): the same columns with the image in ``bytes`` (lmms-eval's
  ``mme_realworld/utils.py``).

For the flat layouts ``Task`` is Perception or Reasoning from ``category`` (lmms-eval's rule),
``Subtask`` its last ``/`` part and ``Category`` is ``l2-category``; there is no ``Question Type``.

Files: in a folder, the ``.json`` / ``.tsv`` files whose name contains "MME_RealWorld" (those with
"lite" in the name for the Lite variant, the others for the full one; JSON before TSV), else the
parquet files; shards in natural order.

Language: an item is ``zh`` when its file is the CN release (a ``CN`` token in its path below the
source, e.g. ``MME-RealWorld-CN/``, ``MME_RealWorld_CN.json``) or its text or choices contain CJK
characters, else ``en``. Only ``config.languages`` (default English only) are kept; the others are
skipped before any other check (counted in the summary, never rejected). CN choices use full-width
brackets (``（A）``), accepted like ``(A)``; ``zh`` ids carry ``zh`` (the two releases number their
items independently).

Records: ``options`` without the ``(A) `` prefixes, ``answer`` the letter, ``category`` =
``Subtask/Category``, ``metadata`` = question id, Task, Subtask, Category, Question Type,
language and the original ``choices`` strings (the official rule needs them).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow.parquet as pq

from .draft import (
    ConvertContext, Draft, ImageFile, ImageData, ImageRef, ImageSource, Item, Reject, Skip, SourceRows,
    answer_letter, natural_key, safe_id, strip_choice_prefixes, table_rows, text_field,
)
from .images import RowError
from .jsonstream import iter_json_array
from ..schemas import problem_text

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_CN_TOKEN = re.compile(r"(?:^|[^a-z])cn(?:[^a-z]|$)")
_BATCH_ROWS = 16  # parquet rows decoded at a time (they hold images)
_SUFFIXES = (".json", ".tsv", ".parquet")
#: A digit string this short is a reference to another row's index (VLMEvalKit convention).
_REFERENCE_MAX_CHARS = 64
#: The line VLMEvalKit / the official prompt script put before the options in a TSV.
_CHOICE_PROMPT = re.compile(r"^(?:The choices are listed below:|选项如下所示[:：])\s*$")


def language_of(*texts: str) -> str:
    """``"zh"`` when any text contains CJK characters, else ``"en"``."""
    return "zh" if any(_CJK.search(t) for t in texts) else "en"


def file_language(path: Path, root: Path) -> Optional[str]:
    """``"zh"`` for a file of the CN release (a ``CN`` token in its path below ``root``), else None."""
    relative = path.name if path == root else path.relative_to(root).as_posix()
    return "zh" if _CN_TOKEN.search(relative.lower()) else None


def find_files(root: Path, lite: bool) -> list[Path]:
    if root.is_file():
        if root.suffix.lower() not in _SUFFIXES:
            raise ValueError(f"MME-RealWorld source {root} is not a .json, .tsv or .parquet file")
        return [root]
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file()), key=natural_key)
    named = [p for p in files if "mmerealworld" in re.sub(r"[^a-z]", "", p.name.lower())]
    named = [p for p in named if ("lite" in p.name.lower()) == lite]
    for suffix in (".json", ".tsv"):
        found = [p for p in named if p.suffix.lower() == suffix]
        if found:
            return found
    parquets = [p for p in files if p.suffix.lower() == ".parquet"]
    if parquets:
        return parquets
    kind = "Lite" if lite else "full"
    raise FileNotFoundError(
        f"no MME-RealWorld {kind} JSON / TSV (name containing MME_RealWorld) or parquet files under {root}"
    )


def convert(ctx: ConvertContext) -> SourceRows:
    files = find_files(ctx.root, ctx.config.mme_realworld_variant == "lite")
    kinds = {p.suffix.lower() for p in files}
    if len(kinds) > 1:
        raise ValueError(f"mixed MME-RealWorld sources {files}: pass one kind of file")
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in files) if kinds == {".parquet"} else None
    return SourceRows(_items(files, ctx), total=total)


def _items(files: list[Path], ctx: ConvertContext) -> Iterator[Item]:
    root = ctx.root if ctx.root.is_dir() else ctx.root.parent
    for path in files:
        rows = iter_json_array(path) if path.suffix.lower() == ".json" else table_rows(path, _BATCH_ROWS)
        forced = file_language(path, root)
        bases = (path.parent, root)
        for number, row in enumerate(rows):
            where = f"{path.name}[{number}]"
            if forced is not None and forced not in ctx.config.languages:
                yield Skip(where, _skip_reason(forced, ctx))
                continue
            yield _item(where, row, forced, bases, ctx)


def _item(where: str, row: Any, forced: Optional[str], bases: tuple[Path, ...], ctx: ConvertContext) -> Item:
    fields: dict[str, Any] = {}
    try:
        if not isinstance(row, dict):
            raise RowError("bad_field", f"item must be an object, got {type(row).__name__}")
        if "Question_id" in row:
            _official_fields(row, bases, fields)
        else:
            _flat_fields(row, fields)
        choices = fields["choices"]
        texts = [fields["question"], *(choices if isinstance(choices, list) else [str(choices)])]
        language = forced or language_of(*(t for t in texts if isinstance(t, str)))
        fields["language"] = language
        if language not in ctx.config.languages:
            return Skip(where, _skip_reason(language, ctx))
        options = strip_choice_prefixes(choices)
        answer = answer_letter(fields["answer"], len(options))
    except RowError as exc:
        return Reject(where, exc.code, str(exc), _record_id(ctx, fields.get("question_id"), fields.get("language")))
    return _draft(where, fields, options, answer, ctx)


def _skip_reason(language: str, ctx: ConvertContext) -> str:
    return f"language {language} not in {list(ctx.config.languages)}"


def _official_fields(item: dict[str, Any], bases: tuple[Path, ...], fields: dict[str, Any]) -> None:
    """Fill ``fields`` from the JSON + images layout (``Question_id``, ``Image``, ``Text``, …); the
    question id first, so a later error still names the record."""
    fields["question_id"] = text_field(item, "Question_id")
    fields.update(
        question=text_field(item, "Text"),
        choices=item.get("Answer choices"),
        answer=text_field(item, "Ground truth"),
        task=text_field(item, "Task", required=False),
        subtask=text_field(item, "Subtask", required=False),
        category=text_field(item, "Category", required=False),
        question_type=text_field(item, "Question Type", required=False) or None,
    )
    image = ImageFile(text_field(item, "Image"), bases)
    fields.update(image=image, source_image=image.path)


def _flat_fields(row: dict[str, Any], fields: dict[str, Any]) -> None:
    """Fill ``fields`` from the Base64 JSON / TSV / lmms-eval parquet layout (``index``,
    ``question``, ``multi-choice options``, ``answer``, ``category``, ``l2-category``, ``image`` or
    ``bytes``)."""
    fields["question_id"] = text_field(row, "index")
    category = text_field(row, "category", required=False)
    fields.update(
        question=text_field(row, "question"),
        choices=_choices(row.get("multi-choice options")),
        answer=text_field(row, "answer"),
        task="Perception" if "perception" in category.lower() else "Reasoning",
        subtask=category.split("/")[-1],
        category=text_field(row, "l2-category", required=False),
        question_type=None,
    )
    fields.update(image=_image(row.get("image", row.get("bytes"))), image_key=f"index:{fields['question_id']}")


def _choices(value: Any) -> Any:
    """A list of choice strings from a list, a Python list literal (the Lite TSV) or VLMEvalKit's
    ``"The choices are listed below:\\n(A) …\\n(B) …"`` text; other values are left for the
    prefix check to refuse."""
    if hasattr(value, "tolist"):  # a numpy array from a parquet reader
        value = value.tolist()
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise RowError("bad_field", f"'multi-choice options' is not a list literal: {text!r:.60}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[1:] if lines and _CHOICE_PROMPT.match(lines[0]) else lines


def _image(value: Any) -> ImageSource:
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(int(value))
    if isinstance(value, str) and len(value.strip()) <= _REFERENCE_MAX_CHARS and value.strip().isdigit():
        return ImageRef(f"index:{value.strip()}")
    if isinstance(value, (bytes, bytearray, str)) and len(value) > 0:
        return ImageData(value if isinstance(value, str) else bytes(value))
    raise RowError("missing_field", "missing field 'image' / 'bytes' (the image)")


def _record_id(ctx: ConvertContext, question_id: Optional[str], language: Optional[str]) -> Optional[str]:
    if question_id is None:
        return None
    return safe_id(ctx.data_source, "zh", question_id) if language == "zh" else safe_id(ctx.data_source, question_id)


def _draft(where: str, fields: dict[str, Any], options: list[str], answer: str, ctx: ConvertContext) -> Draft:
    qid: str = fields["question_id"]
    metadata = {
        "question_id": qid,
        "task": fields["task"],
        "subtask": fields["subtask"],
        "category": fields["category"],
        "question_type": fields["question_type"],
        "choices": list(fields["choices"]),
        "language": fields["language"],
    }
    if "source_image" in fields:
        metadata["source_image"] = fields["source_image"]
    return Draft(
        where=where,
        id=_record_id(ctx, qid, fields["language"]),
        question=fields["question"],
        answer=answer,
        answer_type="mc",
        image=fields["image"],
        problem=problem_text(fields["question"], options),
        options=options,
        category="/".join(part for part in (fields["subtask"], fields["category"]) if part),
        metadata=metadata,
        image_key=fields.get("image_key"),
    )
