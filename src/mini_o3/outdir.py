"""Whether a folder can be a command's output folder, said in one line naming the flag."""

from __future__ import annotations

import tempfile
from pathlib import Path


def out_problem(out: Path, flag: str = "--out") -> str | None:
    """Why ``out`` cannot be the output folder (it is a file, a parent is a file, or the nearest
    existing folder is not writable: tested by creating and removing a probe file), or None."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        return f"{flag} {out} exists and is not a directory"
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"{flag} {out}: {existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"{flag} {out} is not writable: {existing}: {exc.strerror or exc}"
    return None
