"""mini_o3.storage against an S3-compatible server on loopback (moto, IAM auth on): multipart
round trip, checksums, the completion marker written last, corruption, credentials, buckets,
the download cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from fixtures.s3 import S3Server

from mini_o3 import storage
from mini_o3.storage import (
    COMPLETION_MARKER,
    BucketNotFoundError,
    IncompleteArtifactError,
    NotFoundError,
    StorageError,
)

pytestmark = pytest.mark.slow  # a moto S3 server

MiB = 1024 * 1024
PART = 5 * MiB  # minio's minimum part size


def make_tree(root: Path, big: int = 0) -> dict[str, bytes]:
    files = {"config.json": b'{"model_type": "qwen2_5_vl"}', "tokenizer/vocab.json": os.urandom(5000),
             "nested/a/b/c.txt": b"deep", "empty": b""}
    if big:
        files["model.safetensors"] = os.urandom(big)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != COMPLETION_MARKER}


def unreadable(path: Path) -> None:
    """See tests/unit/test_storage_local.py: mode 000, or a /proc/self/mem link for root."""
    if os.geteuid() != 0:
        path.write_bytes(b"x")
        path.chmod(0)
    elif Path("/proc/self/mem").exists():
        path.symlink_to("/proc/self/mem")
    else:  # pragma: no cover
        pytest.skip("no way to make an unreadable file as root here")


def test_round_trip_multipart_with_checksums(s3_server: S3Server, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src", big=11 * MiB)
    uri = s3_server.uri("ckpt")
    manifest = storage.put_dir(tmp_path / "src", uri, part_size=PART, workers=4, progress=True)
    assert manifest.uri == uri and manifest.total_bytes == sum(map(len, files.values()))
    assert {r["path"]: r["sha256"] for r in manifest.files} == \
        {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    client = s3_server.client()
    big = client.stat_object(s3_server.bucket, f"{s3_server.prefix}/ckpt/model.safetensors")
    assert big.etag.endswith("-3")  # 11 MiB in 5 MiB parts: a 3-part multipart upload
    assert big.metadata["x-amz-meta-sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    marker = json.loads(client.get_object(s3_server.bucket, f"{s3_server.prefix}/ckpt/{COMPLETION_MARKER}").read())
    assert marker["files"] == manifest.files
    assert storage.is_complete(uri) and storage.exists(uri) and storage.exists(storage.join(uri, "config.json"))
    out = storage.get_dir(uri, tmp_path / "out", progress=True)
    assert read_tree(out) == files
    assert storage.read_manifest(str(out)).files == manifest.files  # the copy is itself a complete artifact
    # KFP's minio:// alias addresses the same objects
    assert storage.read_manifest(uri.replace("s3://", "minio://", 1)).files == manifest.files


def test_failed_upload_leaves_no_marker_and_is_refused(s3_server: S3Server, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    unreadable(tmp_path / "src" / "zz-last.bin")  # files go in sorted order with one worker
    uri = s3_server.uri("half")
    with pytest.raises(StorageError, match="cannot read .*zz-last.bin"):
        storage.put_dir(tmp_path / "src", uri, workers=1)
    assert storage.exists(storage.join(uri, "config.json"))  # the first files did arrive ...
    assert not storage.is_complete(uri)  # ... but the marker did not
    with pytest.raises(IncompleteArtifactError, match=f"{uri}: no completion marker.*half-written"):
        storage.get_dir(uri, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # the retried task finishes the artifact
    (tmp_path / "src" / "zz-last.bin").unlink()
    (tmp_path / "src" / "zz-last.bin").write_bytes(b"now readable")
    storage.put_dir(tmp_path / "src", uri, workers=1)
    assert read_tree(storage.get_dir(uri))["zz-last.bin"] == b"now readable"


def test_corrupted_object_is_detected(s3_server: S3Server, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    uri = s3_server.uri("corrupt")
    storage.put_dir(tmp_path / "src", uri)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_bytes(b"other")
    storage.put_dir(tmp_path / "other", s3_server.uri("other"))
    storage.get_dir(s3_server.uri("other"), tmp_path / "out")  # out/ holds another complete artifact
    bad = bytearray(files["tokenizer/vocab.json"])
    bad[0] ^= 0xFF
    s3_server.client().put_object(s3_server.bucket, f"{s3_server.prefix}/corrupt/tokenizer/vocab.json",
                                  io.BytesIO(bytes(bad)), len(bad))
    with pytest.raises(IncompleteArtifactError, match=f"{uri}: file tokenizer/vocab.json disagrees.*sha256"):
        storage.get_dir(uri, tmp_path / "out")
    assert not (tmp_path / "out" / "tokenizer" / "vocab.json").exists()  # the bad bytes never land
    assert not (tmp_path / "out" / COMPLETION_MARKER).exists()  # its marker went before any file changed
    assert not list((tmp_path / "out").rglob("*.mini-o3-part"))
    s3_server.client().remove_object(s3_server.bucket, f"{s3_server.prefix}/corrupt/config.json")
    with pytest.raises(IncompleteArtifactError, match="config.json listed in the completion marker is missing"):
        storage.get_dir(uri, tmp_path / "out2", verify=False)


def test_download_cache_is_reused(s3_server: S3Server, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    uri = s3_server.uri("cached")
    storage.put_dir(tmp_path / "src", uri)
    first = storage.get_dir(uri)
    assert first.is_relative_to(Path(os.environ["MINI_O3_CACHE"]) / "artifacts")
    # with every file cached, the objects are not needed again: delete them, keep the marker
    for rel in files:
        s3_server.client().remove_object(s3_server.bucket, f"{s3_server.prefix}/cached/{rel}")
    assert storage.get_dir(uri) == first and read_tree(first) == files
    # a damaged cached file is fetched again (and is gone from the store now: a clear error)
    (first / "config.json").write_bytes(b'{"model_type": "qwen2_5_vX"}')
    with pytest.raises(IncompleteArtifactError, match="config.json listed in the completion marker is missing"):
        storage.get_dir(uri)


def test_complete_artifact_is_not_overwritten_unless_asked(s3_server: S3Server, tmp_path: Path) -> None:
    make_tree(tmp_path / "v1")
    uri = s3_server.uri("model")
    storage.put_dir(tmp_path / "v1", uri)
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "config.json").write_bytes(b"v2")
    with pytest.raises(StorageError, match=f"{uri} already holds a complete artifact.*overwrite=True"):
        storage.put_dir(tmp_path / "v2", uri)
    storage.put_dir(tmp_path / "v2", uri, overwrite=True)
    assert read_tree(storage.get_dir(uri, tmp_path / "out")) == {"config.json": b"v2"}
    assert not storage.exists(storage.join(uri, "tokenizer/vocab.json"))  # stale objects removed


def test_small_files(s3_server: S3Server, tmp_path: Path) -> None:
    uri = s3_server.uri("reports", "summary.json")
    storage.put_text(uri, '{"avg@8": 0.25}')
    assert storage.get_text(uri) == '{"avg@8": 0.25}'
    (tmp_path / "plot.png").write_bytes(os.urandom(1000))
    storage.put_file(tmp_path / "plot.png", s3_server.uri("reports", "plot.png"))
    back = storage.get_file(s3_server.uri("reports", "plot.png"), tmp_path / "back" / "plot.png")
    assert back.read_bytes() == (tmp_path / "plot.png").read_bytes()
    assert storage.exists(s3_server.uri("reports")) and not storage.exists(s3_server.uri("nothing"))
    with pytest.raises(NotFoundError, match="missing.txt"):
        storage.get_text(s3_server.uri("missing.txt"))
    with pytest.raises(NotFoundError, match="missing.bin"):
        storage.get_file(s3_server.uri("missing.bin"), tmp_path / "x")


def test_wrong_credentials_are_a_clear_error(s3_server: S3Server, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path / "src")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-123")
    with pytest.raises(StorageError, match="refused the request.*AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") as info:
        storage.put_dir(tmp_path / "src", s3_server.uri("x"))
    assert "wrong-secret-123" not in str(info.value) and s3_server.endpoint in str(info.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN")
    with pytest.raises(StorageError, match="InvalidAccessKeyId"):
        storage.get_text(s3_server.uri("x.txt"))


def test_missing_bucket_is_a_clear_error(s3_server: S3Server, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    with pytest.raises(BucketNotFoundError, match="s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"):
        storage.put_dir(tmp_path / "src", "s3://no-such-bucket/x")
    with pytest.raises(BucketNotFoundError, match="no-such-bucket"):
        storage.get_dir("s3://no-such-bucket/x")
    assert not storage.exists("s3://no-such-bucket/x")


def test_unreachable_endpoint(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MINI_O3_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MINI_O3_S3_RETRIES", "0")
    with pytest.raises(StorageError, match=f"cannot talk to S3 endpoint http://127.0.0.1:{port}.*MINI_O3_S3_ENDPOINT"):
        storage.is_complete(s3_server.uri("x"))
