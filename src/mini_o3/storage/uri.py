"""Artifact URIs: ``s3://bucket/key`` (``minio://`` is KFP's alias of it), ``file:///path`` or a
plain local path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mini_o3.storage.errors import StorageError

REMOTE_SCHEMES = ("s3", "minio")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key (no leading or trailing ``/``; ``""`` is the bucket root)."""

    bucket: str
    key: str

    def child(self, rel: str) -> S3Location:
        rel = rel.strip("/")
        return S3Location(self.bucket, f"{self.key}/{rel}" if self.key else rel)

    @property
    def prefix(self) -> str:
        """The key as a folder prefix (``key/``; ``""`` at the bucket root)."""
        return f"{self.key}/" if self.key else ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _scheme(uri: str) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise StorageError(f"empty storage URI {uri!r}: expected s3://bucket/key or a local path")
    if "://" not in uri:
        head, sep, _ = uri.partition(":")
        if sep and head.lower() in (*REMOTE_SCHEMES, "file"):  # s3:/bucket, s3:bucket, file:/x
            raise StorageError(f"malformed storage URI {uri!r}: expected {head.lower()}://... "
                               "(s3://bucket/key, file:///path) or a plain local path")
        return ""
    return uri.split("://", 1)[0].lower()


def is_remote(uri: str) -> bool:
    """True for ``s3://`` / ``minio://`` URIs, False for local paths and ``file://`` URIs."""
    scheme = _scheme(uri)
    if scheme in REMOTE_SCHEMES:
        return True
    if scheme in ("", "file"):
        return False
    raise StorageError(f"unsupported storage URI {uri!r}: scheme {scheme!r} is not one of s3, minio, file "
                       "(or a plain local path)")


def parse_s3(uri: str) -> S3Location:
    """``s3://bucket/a/b/`` → ``S3Location("bucket", "a/b")``."""
    if not is_remote(uri):
        raise StorageError(f"{uri!r} is not an s3:// URI")
    parsed = urlparse(uri)
    bucket = parsed.netloc
    if not bucket:
        raise StorageError(f"bad S3 URI {uri!r}: no bucket (expected s3://bucket/key)")
    key = parsed.path.strip("/")
    if "//" in key or any(part in (".", "..") for part in key.split("/") if key):
        raise StorageError(f"bad S3 URI {uri!r}: empty, '.' or '..' path segments are not allowed")
    return S3Location(bucket, key)


def local_path(uri: str) -> Path:
    """The local path of a plain path or a ``file://`` URI."""
    if is_remote(uri):
        raise StorageError(f"{uri!r} is not a local path")
    if _scheme(uri) == "file":
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"bad file URI {uri!r}: only file:///absolute/path (no host) is supported")
        return Path(parsed.path)
    return Path(uri).expanduser()


def join(uri: str, *parts: str) -> str:
    """Append path segments to a URI or local path (``join("s3://b/run", "sft", "model")``)."""
    clean = [p.strip("/") for p in parts if p and p.strip("/")]
    if not clean:
        return uri
    if is_remote(uri) or _scheme(uri) == "file":
        return uri.rstrip("/") + "/" + "/".join(clean)
    return str(Path(uri, *clean))
