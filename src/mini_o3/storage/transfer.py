"""Helpers shared by both backends: parallel file work, verified local copies, temp names."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

from mini_o3.storage.errors import StorageError
from mini_o3.storage.manifest import CHUNK, TEMP_SUFFIX
from mini_o3.storage.progress import Advance

T = TypeVar("T")
R = TypeVar("R")


def run_parallel(items: Iterable[T], fn: Callable[[T], R], workers: int) -> list[R]:
    """``fn`` over ``items`` on ``workers`` threads, results in order. The first failure cancels
    the work not yet started and is re-raised (an OSError becomes a StorageError)."""
    items = list(items)
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="mini-o3-storage") as pool:
        futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # KeyboardInterrupt / SIGTERM handler: stop queued work
            for future in futures:
                future.cancel()
            raise
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
        if failed:
            for future in futures:
                future.cancel()
            exc = failed[0].exception()
            assert exc is not None
            if isinstance(exc, OSError):
                raise StorageError(str(exc)) from exc
            raise exc
        return [f.result() for f in futures]


def temp_path(target: Path) -> Path:
    """A hidden temp name next to ``target`` that tree scans skip."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


def stage_stream(target: Path, chunks: Iterable[bytes], advance: Advance) -> tuple[Path, str, int]:
    """Write ``chunks`` to a temp file next to ``target``; return (temp path, sha256, size). The
    caller checks the digest, then ``os.replace``s the temp file over ``target`` (or unlinks it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    digest, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                advance(len(chunk))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest(), size


def commit(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)


def file_chunks(path: Path) -> Iterable[bytes]:
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
