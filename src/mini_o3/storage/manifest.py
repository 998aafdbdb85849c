"""The completion marker: a JSON manifest of every file (relative path, size, sha256), written
LAST, so a reader that finds it knows the whole tree is there."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypedDict

from mini_o3 import __version__
from mini_o3.storage.errors import IncompleteArtifactError, StorageError

COMPLETION_MARKER = "_MINI_O3_COMPLETE.json"
MANIFEST_FORMAT = "mini-o3-artifact/v1"
CHUNK = 1 << 20


class FileRecord(TypedDict):
    path: str  # relative, POSIX separators
    size: int
    sha256: str


@dataclass
class ArtifactManifest:
    """What the completion marker holds."""

    uri: str
    files: list[FileRecord]
    total_bytes: int
    created: str
    writer: dict[str, str] = field(default_factory=dict)
    format: str = MANIFEST_FORMAT

    @classmethod
    def build(cls, uri: str, files: list[FileRecord]) -> ArtifactManifest:
        files = sorted(files, key=lambda r: r["path"])
        return cls(uri=uri, files=files, total_bytes=sum(r["size"] for r in files),
                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   writer={"host": socket.gethostname(), "package": "mini-o3-pipelines", "version": __version__})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, uri: str) -> ArtifactManifest:
        """Parse a marker; a malformed one is an IncompleteArtifactError naming ``uri``."""
        try:
            data: dict[str, Any] = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
            files: list[FileRecord] = [
                {"path": safe_relpath(str(r["path"])), "size": int(r["size"]), "sha256": str(r["sha256"])}
                for r in data["files"]]
            return cls(uri=str(data["uri"]), files=files, total_bytes=int(data["total_bytes"]),
                       created=str(data["created"]), writer=dict(data.get("writer") or {}), format=data["format"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IncompleteArtifactError(f"{uri}: malformed completion marker {COMPLETION_MARKER}: {exc}") from exc

    def by_path(self) -> dict[str, FileRecord]:
        return {r["path"]: r for r in self.files}


def safe_relpath(rel: str) -> str:
    """A relative POSIX path inside the artifact (no absolute paths, no ``..``)."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or any(p in ("..", ".", "") for p in rel.split("/")):
        raise ValueError(f"unsafe path {rel!r} in manifest")
    return rel


def sha256_stream(handle: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """sha256 hex digest and size of a stream, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    return digest.hexdigest(), size


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    try:
        with open(path, "rb") as handle:
            return sha256_stream(handle, on_bytes)[0]
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def scan_tree(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under ``root`` (symlinks followed) as (relative POSIX path, path), sorted;
    the marker and our download temp files are left out. A dangling symlink is an error."""
    root = Path(root)
    if not root.is_dir():
        raise StorageError(f"{root}: not a directory (put_dir uploads a directory tree)")
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if rel == COMPLETION_MARKER or is_temp_name(name):
                continue
            if not path.is_file():
                raise StorageError(f"{path}: not a regular file (dangling symlink or special file)")
            out.append((rel, path))
    return sorted(out)


TEMP_SUFFIX = ".mini-o3-part"


def is_temp_name(name: str) -> bool:
    return name.endswith(TEMP_SUFFIX)
