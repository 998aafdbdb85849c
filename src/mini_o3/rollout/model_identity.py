"""``model_identity``: the name a policy spec gives its model, so the config hash (and with it the
resumable sample store) tells models apart. A hub id names itself; a folder is its resolved path
plus a fingerprint of its files, so another checkpoint written to the same path is another model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Files up to this size are hashed whole; larger ones (weights) by size and three windows.
_WHOLE = 1 << 20
_WINDOW = 1 << 16


def model_fingerprint(folder: str | Path) -> str:
    """12 hex digits over every file's relative path and content (large files: size and their
    first, middle and last 64 KiB: different trained weights differ there too)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        with open(path, "rb") as handle:
            if size <= _WHOLE:
                digest.update(handle.read())
                continue
            for offset in (0, (size - _WINDOW) // 2, size - _WINDOW):
                handle.seek(offset)
                digest.update(handle.read(_WINDOW))
    return digest.hexdigest()[:12]


def model_identity(model: str | Path) -> str:
    """``/abs/path@fingerprint`` for a model folder, else ``model`` itself (a hub id)."""
    path = Path(model)
    if not path.is_dir():
        return str(model)
    return f"{path.resolve()}@{model_fingerprint(path)}"
