"""VisualProbe (train / easy / medium / hard) and DeepEyes_train_4K: already in the Mini-o3
layout, ``<split>.json`` (a list of rows) + ``data/`` images (protocol §15.2–15.3).

Rows keep their ``doc_id`` and ``problem`` exactly (reference trajectories are keyed by them);
answers are free-form, ``category`` is the data source, and the original image path and
``data_source`` go to ``metadata``. Row image paths are relative to ``BASE_IMAGE_DIR``
(``VisualProbe_Hard/data/x.jpg``) or to the dataset folder (``data/x.jpg``); both are looked up
inside the source folder, and absolute paths are refused.

Rows may carry keys beyond the five row fields: upstream reads these files with
``pd.DataFrame(json.load(f))`` (Mini-o3/Mini-o3 @8654dbf, verl/utils/dataset/multimodal_dataset.py
lines 190-196), which keeps every key as a column. Such rows are accepted; their extra keys go to
``metadata["extra"]`` and one warning per file lists them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from ..schemas import MiniO3Row
from .draft import ConvertContext, Draft, ImageFile, Item, Reject, SourceRows, load_json_list
from .images import RowError
from .schema import error_code, short_error

log = logging.getLogger(__name__)
#: The keys of a Mini-o3 row; any other key of a source row is kept in metadata["extra"].
ROW_FIELDS = tuple(MiniO3Row.model_fields)


def find_rows_file(root: Path, split: str) -> Path:
    """``root`` itself when it is a ``.json`` file, else ``<split>.json`` in or below ``root``."""
    if root.is_file():
        if root.suffix.lower() != ".json":
            raise ValueError(f"source {root} is not a .json row file")
        return root
    direct = root / f"{split}.json"
    if direct.is_file():
        return direct
    found = sorted(root.rglob(f"{split}.json"))
    if not found:
        raise FileNotFoundError(f"no {split}.json under {root} (expected the Mini-o3 layout: {split}.json + data/)")
    return found[0]


def convert(ctx: ConvertContext) -> SourceRows:
    path = find_rows_file(ctx.root, ctx.split)
    rows = load_json_list(path)
    return SourceRows(_items(rows, path, ctx), total=len(rows))


def _items(rows: list[Any], path: Path, ctx: ConvertContext) -> Iterator[Item]:
    base = path.parent
    extra_keys = sorted({k for raw in rows if isinstance(raw, dict) for k in raw if k not in ROW_FIELDS}, key=str)
    if extra_keys:
        log.warning("%s: rows carry keys beyond the Mini-o3 row fields, kept in metadata['extra']: %s",
                    path, ", ".join(map(str, extra_keys)))
    for i, raw in enumerate(rows):
        where = f"{path.name}[{i}]"
        raw_id = raw.get("doc_id") if isinstance(raw, dict) else None
        try:
            if not isinstance(raw, dict):
                raise RowError("bad_field", f"row must be an object, got {type(raw).__name__}")
            known = {k: v for k, v in raw.items() if k in ROW_FIELDS}
            try:
                row = MiniO3Row.model_validate({**known, "images": _images(raw), "data_source": ctx.data_source})
            except ValidationError as exc:
                raise RowError(error_code(exc), short_error(exc)) from None
        except RowError as exc:
            yield Reject(where, exc.code, str(exc), None if raw_id is None else str(raw_id))
            continue
        metadata = {"source_image": row.images[0], "source_data_source": raw.get("data_source")}
        extra = {str(k): v for k, v in raw.items() if k not in ROW_FIELDS}
        if extra:
            metadata["extra"] = extra
        yield Draft(
            where=where,
            id=row.doc_id,
            question=row.question,
            answer=row.solution,
            answer_type="free",
            image=ImageFile(row.images[0], (base,)),
            problem=row.problem,
            category=ctx.data_source,
            metadata=metadata,
        )


def _images(raw: dict[str, Any]) -> list[str]:
    """The row's one image path; absolute and '..' paths are refused here with code unsafe_path
    (``MiniO3Row`` refuses them too, and ``resolve_inside`` re-checks against the source root)."""
    images = raw.get("images")
    if images is None:
        raise RowError("missing_field", "missing field 'images'")
    if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], str):
        raise RowError("bad_field", f"'images' must be a list with one path, got {images!r:.80}")
    path = images[0]
    if path.startswith("/") or ".." in path.replace("\\", "/").split("/"):
        raise RowError("unsafe_path", f"image path {path!r} is absolute or contains '..'")
    return images
