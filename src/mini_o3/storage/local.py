"""Local-filesystem side of the storage API (plain paths and ``file://`` URIs)."""

from __future__ import annotations

import os
from pathlib import Path

from mini_o3.atomic import write_text_atomic
from mini_o3.storage.errors import IncompleteArtifactError, NotFoundError, StorageError
from mini_o3.storage.manifest import (
    COMPLETION_MARKER,
    ArtifactManifest,
    FileRecord,
    scan_tree,
    sha256_file,
)
from mini_o3.storage.progress import Advance, byte_progress
from mini_o3.storage.transfer import commit, file_chunks, run_parallel, stage_stream


def read_manifest(root: Path, uri: str) -> ArtifactManifest:
    marker = root / COMPLETION_MARKER
    if not marker.is_file():
        what = "the directory does not exist" if not root.exists() else \
            "the writer did not finish (half-written) or it is not a mini-o3 artifact"
        raise IncompleteArtifactError(f"{uri}: no completion marker {COMPLETION_MARKER}: {what}")
    return ArtifactManifest.from_json(marker.read_text(encoding="utf-8"), uri)


def copy_file(src: Path, dst: Path, advance: Advance, expect: FileRecord | None = None,
              uri: str | None = None) -> FileRecord:
    """Copy ``src`` to ``dst`` atomically, hashing on the way; with ``expect`` the copy must match."""
    tmp, sha, size = stage_stream(dst, file_chunks(src), advance)
    if expect is not None and (size != expect["size"] or sha != expect["sha256"]):
        tmp.unlink(missing_ok=True)
        raise IncompleteArtifactError(_mismatch(uri or str(src.parent), expect, size, sha))
    commit(tmp, dst)
    return {"path": "", "size": size, "sha256": sha}


def _mismatch(uri: str, record: FileRecord, size: int, sha: str | None) -> str:
    if size != record["size"]:
        got = f"size {size} != {record['size']} in the marker"
    else:
        got = f"sha256 {sha} != {record['sha256']} in the marker"
    return f"{uri}: file {record['path']} disagrees with the completion marker ({got}): corrupted or changed after sealing"


def verify_tree(root: Path, manifest: ArtifactManifest, uri: str, *, checksums: bool, workers: int,
                progress: bool) -> None:
    """Every file of the manifest exists with its size (and sha256 when ``checksums``)."""
    for record in manifest.files:
        path = root / record["path"]
        if not path.is_file():
            raise IncompleteArtifactError(f"{uri}: file {record['path']} listed in the completion marker is missing")
        size = path.stat().st_size
        if size != record["size"]:
            raise IncompleteArtifactError(_mismatch(uri, record, size, None))
    if not checksums:
        return
    with byte_progress(progress, manifest.total_bytes, f"verify {uri}") as advance:
        def check(record: FileRecord) -> None:
            sha = sha256_file(root / record["path"], advance)
            if sha != record["sha256"]:
                raise IncompleteArtifactError(_mismatch(uri, record, record["size"], sha))

        run_parallel(manifest.files, check, workers)


def put_dir(src: Path, dest: Path, dest_uri: str, *, progress: bool, workers: int, overwrite: bool) -> ArtifactManifest:
    """Copy (or, when ``dest`` is ``src``, seal in place) and write the marker last."""
    src_r, dest_r = src.resolve(), dest.resolve()
    same = src_r == dest_r
    if not same and (dest_r.is_relative_to(src_r) or src_r.is_relative_to(dest_r)):
        raise StorageError(f"cannot copy {src} to {dest_uri}: one directory contains the other")
    files = scan_tree(src)
    old = _replaceable(dest, dest_uri, overwrite)
    total = sum(path.stat().st_size for _, path in files)
    verb = "seal" if same else "copy"
    with byte_progress(progress, total, f"{verb} {src} → {dest_uri}") as advance:
        def one(item: tuple[str, Path]) -> FileRecord:
            rel, path = item
            if same:
                return {"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path, advance)}
            record = copy_file(path, dest / rel, advance)
            return {**record, "path": rel}

        records = run_parallel(files, one, workers)
    manifest = ArtifactManifest.build(dest_uri, records)
    if old is not None and not same:
        keep = {r["path"] for r in records}
        for record in old.files:
            if record["path"] not in keep:
                (dest / record["path"]).unlink(missing_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dest / COMPLETION_MARKER, manifest.to_json())
    return manifest


def _replaceable(dest: Path, dest_uri: str, overwrite: bool) -> ArtifactManifest | None:
    """The artifact already at ``dest`` (its marker removed when ``overwrite``), else None."""
    if not (dest / COMPLETION_MARKER).is_file():
        return None
    try:
        old = read_manifest(dest, dest_uri)
    except IncompleteArtifactError:
        old = None
    if not overwrite:
        when = f" (sealed {old.created} by {old.writer.get('host', '?')})" if old else ""
        raise StorageError(f"{dest_uri} already holds a complete artifact{when}; pass overwrite=True to replace it")
    (dest / COMPLETION_MARKER).unlink()  # readers must never see the old marker over new content
    return old


def get_dir(src: Path, uri: str, dest: Path | None, *, progress: bool, verify: bool, workers: int) -> Path:
    manifest = read_manifest(src, uri)
    if dest is None or dest.resolve() == src.resolve():
        verify_tree(src, manifest, uri, checksums=verify, workers=workers, progress=progress)
        return src
    verify_tree(src, manifest, uri, checksums=False, workers=workers, progress=False)
    (dest / COMPLETION_MARKER).unlink(missing_ok=True)  # no stale marker over a half-done copy
    with byte_progress(progress, manifest.total_bytes, f"copy {uri} → {dest}") as advance:
        run_parallel(manifest.files, lambda r: copy_file(src / r["path"], dest / r["path"], advance,
                                                         r if verify else None, uri), workers)
    write_text_atomic(dest / COMPLETION_MARKER, (src / COMPLETION_MARKER).read_text(encoding="utf-8"))
    return dest


def put_file(src: Path, dest: Path) -> None:
    if not src.is_file():
        raise StorageError(f"{src}: no such file")
    tmp, _, _ = stage_stream(dest, file_chunks(src), lambda _: None)
    commit(tmp, dest)


def get_file(src: Path, uri: str, dest: Path) -> Path:
    if not src.is_file():
        raise NotFoundError(f"{uri}: no such file")
    put_file(src, dest)
    return dest


def exists(path: Path) -> bool:
    return os.path.lexists(path)
