"""Where input data comes from: a local file, a local folder, or a Hugging Face dataset id.

A hub id is downloaded with ``huggingface_hub.snapshot_download`` (honouring ``HF_TOKEN``,
``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` as usual); local paths are used in place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

#: ``owner/name`` as the hub spells dataset ids.
#: A Hugging Face repo id ``org/name`` (the pattern; ``HUB_ID`` matches a whole string).
HUB_REPO = r"[A-Za-z0-9][\w.-]*/[\w.-]+"
HUB_ID = re.compile(rf"^{HUB_REPO}$")


def looks_like_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source)) and not Path(source).exists()


def resolve_source(
    source: str,
    *,
    allow_patterns: Optional[Sequence[str]] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[Path] = None,
) -> Path:
    """Return a local path for ``source``, downloading a hub dataset snapshot when needed.

    ``allow_patterns`` limits what is downloaded (e.g. ``["*.parquet"]``).
    """
    path = Path(source).expanduser()
    if path.exists():
        return path
    if not looks_like_hub_id(source):
        raise FileNotFoundError(f"source {source!r} is neither an existing path nor a hub dataset id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(
            repo_id=source,
            repo_type="dataset",
            revision=revision,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
    except Exception as exc:  # network, auth, offline mode, missing repo: all end here
        raise RuntimeError(f"could not download hub dataset {source!r}: {type(exc).__name__}: {exc}") from exc
    return Path(local)


def files_with_suffix(root: Path, suffixes: Sequence[str]) -> list[Path]:
    """``root`` itself if it is such a file, else every matching file below it, sorted."""
    suffixes = tuple(s.lower() for s in suffixes)
    if root.is_file():
        if root.suffix.lower() not in suffixes:
            raise ValueError(f"{root} is not a {'/'.join(suffixes)} file")
        return [root]
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not found:
        raise FileNotFoundError(f"no {'/'.join(suffixes)} files under {root}")
    return found
