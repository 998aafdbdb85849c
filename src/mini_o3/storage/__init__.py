"""One API for artifacts (directory trees) and small files on ``s3://`` (``minio://``) and local
paths. An artifact is complete only once its marker ``_MINI_O3_COMPLETE.json`` — a manifest of
every file with its size and sha256 — is written, which happens last: readers refuse a tree
without it (``IncompleteArtifactError``), so a half-written checkpoint is never consumed.

S3 settings come from the environment (``S3Settings.from_env``): ``MINI_O3_S3_ENDPOINT`` (else
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``MINI_O3_S3_VERIFY_TLS``, ``MINI_O3_S3_PART_SIZE``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mini_o3.atomic import write_bytes_atomic
from mini_o3.storage import local as _local
from mini_o3.storage.errors import (
    BucketNotFoundError,
    IncompleteArtifactError,
    NotFoundError,
    StorageError,
)
from mini_o3.storage.manifest import (
    COMPLETION_MARKER,
    ArtifactManifest,
    FileRecord,
    sha256_file,
)
from mini_o3.storage.s3 import S3
from mini_o3.storage.settings import S3Settings
from mini_o3.storage.uri import S3Location, is_remote, join, local_path, parse_s3

__all__ = [
    "COMPLETION_MARKER",
    "S3",
    "ArtifactManifest",
    "BucketNotFoundError",
    "FileRecord",
    "IncompleteArtifactError",
    "NotFoundError",
    "S3Location",
    "S3Settings",
    "StorageError",
    "cache_root",
    "exists",
    "get_dir",
    "get_file",
    "get_text",
    "is_complete",
    "is_remote",
    "join",
    "local_path",
    "mark_complete",
    "parse_s3",
    "put_dir",
    "put_file",
    "put_text",
    "read_manifest",
]

DEFAULT_WORKERS = 8


def _s3(uri: str, workers: int = DEFAULT_WORKERS) -> tuple[S3, S3Location]:
    loc = parse_s3(uri)
    settings = S3Settings.from_env()
    settings.require_credentials(uri)
    return S3(settings, pool_size=max(10, workers * 4)), loc


def cache_root() -> Path:
    """``$MINI_O3_CACHE`` or ``~/.cache/mini-o3``; downloads go to ``artifacts/<hash>`` under it."""
    return Path(os.environ.get("MINI_O3_CACHE") or Path.home() / ".cache" / "mini-o3").expanduser()


def exists(uri: str) -> bool:
    """Any object or file at or under ``uri``."""
    if is_remote(uri):
        s3, loc = _s3(uri)
        return s3.exists(loc)
    return _local.exists(local_path(uri))


def is_complete(uri: str) -> bool:
    """The completion marker is present (the content is checked by ``get_dir``)."""
    if is_remote(uri):
        s3, loc = _s3(uri)
        return s3.stat(loc.child(COMPLETION_MARKER)) is not None
    return (local_path(uri) / COMPLETION_MARKER).is_file()


def read_manifest(uri: str) -> ArtifactManifest:
    """The manifest of a complete artifact; IncompleteArtifactError without a marker."""
    if is_remote(uri):
        s3, loc = _s3(uri)
        return s3.read_manifest(loc)[0]
    return _local.read_manifest(local_path(uri), uri)


def put_dir(src: Path | str, dest_uri: str, *, progress: bool = False, workers: int = DEFAULT_WORKERS,
            overwrite: bool = False, part_size: int | None = None) -> ArtifactManifest:
    """Upload / copy the tree ``src`` to ``dest_uri`` (``workers`` files at a time, multipart parts
    of ``part_size`` bytes, default ``S3Settings.part_size``), verify it, then write the marker.
    A local ``dest_uri`` equal to ``src`` seals in place. A complete artifact at ``dest_uri`` is
    replaced only with ``overwrite=True`` (its marker goes first, stale files after)."""
    src = Path(src)
    if is_remote(dest_uri):
        s3, loc = _s3(dest_uri, workers)
        return s3.put_dir(src, loc, progress=progress, workers=workers, overwrite=overwrite, part_size=part_size)
    return _local.put_dir(src, local_path(dest_uri), dest_uri, progress=progress, workers=workers,
                          overwrite=overwrite)


def mark_complete(path: Path | str, *, progress: bool = False, workers: int = DEFAULT_WORKERS) -> ArtifactManifest:
    """Seal a local directory in place: checksum every file, (re)write the marker."""
    return put_dir(Path(path), str(path), progress=progress, workers=workers, overwrite=True)


def get_dir(src_uri: str, dest: Path | str | None = None, *, progress: bool = False, verify: bool = True,
            workers: int = DEFAULT_WORKERS) -> Path:
    """A local directory holding the complete artifact ``src_uri``; IncompleteArtifactError without
    the marker or when a file disagrees with it (``verify``: sha256 of every file, else sizes).
    Local ``src_uri`` with ``dest`` None: the path itself. S3: download to ``dest`` or to the cache
    (``cache_root()/artifacts/<hash of uri + marker>``), keeping files already there that match."""
    if not is_remote(src_uri):
        return _local.get_dir(local_path(src_uri), src_uri, None if dest is None else Path(dest),
                              progress=progress, verify=verify, workers=workers)
    s3, loc = _s3(src_uri, workers)
    manifest, marker_text = s3.read_manifest(loc)
    if dest is None:
        key = hashlib.sha256(f"{loc}\n{marker_text}".encode()).hexdigest()[:24]
        dest = cache_root() / "artifacts" / key
    return s3.get_dir(loc, Path(dest), manifest, marker_text, progress=progress, verify=verify, workers=workers)


def put_text(uri: str, text: str) -> None:
    """Write a small text file (UTF-8) atomically."""
    data = text.encode("utf-8")
    if is_remote(uri):
        s3, loc = _s3(uri)
        s3.write_bytes(loc, data, "application/json" if uri.endswith(".json") else "text/plain; charset=utf-8")
    else:
        write_bytes_atomic(local_path(uri), data)


def get_text(uri: str) -> str:
    """Read a small text file (UTF-8); NotFoundError when there is none."""
    if is_remote(uri):
        s3, loc = _s3(uri)
        return s3.read_bytes(loc).decode("utf-8")
    path = local_path(uri)
    if not path.is_file():
        raise NotFoundError(f"{uri}: no such file")
    return path.read_text(encoding="utf-8")


def put_file(src: Path | str, uri: str) -> None:
    """Upload / copy one file (S3: multipart above the part size, sha256 metadata, re-stat)."""
    src = Path(src)
    if not is_remote(uri):
        _local.put_file(src, local_path(uri))
        return
    if not src.is_file():
        raise StorageError(f"{src}: no such file")
    s3, loc = _s3(uri)
    s3.check_bucket(loc)
    record: FileRecord = {"path": src.name, "size": src.stat().st_size, "sha256": sha256_file(src)}
    s3.upload_file(src, loc, record, lambda _: None)


def get_file(uri: str, dest: Path | str) -> Path:
    """Download / copy one file to ``dest`` (atomically); NotFoundError when there is none."""
    dest = Path(dest)
    if not is_remote(uri):
        return _local.get_file(local_path(uri), uri, dest)
    s3, loc = _s3(uri)
    stat = s3.stat(loc)
    if stat is None:
        raise NotFoundError(f"{uri}: no such object at {s3.settings.endpoint}")
    size, sha = stat
    record: FileRecord | None = {"path": loc.key, "size": size, "sha256": sha} if sha else None
    s3.download_file(loc, dest, record, lambda _: None, artifact_uri=uri)
    return dest
