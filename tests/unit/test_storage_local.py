"""mini_o3.storage on local paths: URIs, sealing, the completion marker, verification, settings."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mini_o3 import storage
from mini_o3.storage import (
    COMPLETION_MARKER,
    IncompleteArtifactError,
    NotFoundError,
    S3Settings,
    StorageError,
)


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"config.json": b'{"a": 1}', "weights/model-00001.safetensors": os.urandom(300_000),
             "weights/deep/er/tokenizer.json": b"tok" * 100, "empty.txt": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def unreadable(path: Path) -> None:
    """A file whose read fails: mode 000, or for root (who may read anything) a link to
    /proc/self/mem, a regular file whose read at offset 0 fails with EIO."""
    if os.geteuid() != 0:
        path.write_bytes(b"secret")
        path.chmod(0)
    elif Path("/proc/self/mem").exists():
        path.symlink_to("/proc/self/mem")
    else:  # pragma: no cover
        pytest.skip("no way to make an unreadable file as root here")


# -- URIs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("uri,remote", [("s3://b/k", True), ("minio://b/k", True), ("S3://b", True),
                                        ("/tmp/x", False), ("rel/x", False), ("file:///tmp/x", False)])
def test_is_remote(uri: str, remote: bool) -> None:
    assert storage.is_remote(uri) is remote


@pytest.mark.parametrize("uri", ["gs://b/k", "http://host/x", "", "   "])
def test_unsupported_uris_are_refused_by_name(uri: str) -> None:
    with pytest.raises(StorageError, match="URI"):
        storage.is_remote(uri)


def test_join_both_kinds() -> None:
    assert storage.join("s3://b/run/", "sft", "/model/") == "s3://b/run/sft/model"
    assert storage.join("minio://b", "x") == "minio://b/x"
    assert storage.join("file:///data/run", "a") == "file:///data/run/a"
    assert storage.join("/data/run", "a", "b") == "/data/run/a/b"
    assert storage.join("s3://b/run") == "s3://b/run"


@pytest.mark.parametrize("uri,message", [("s3:///key", "no bucket"), ("s3://b/a/../c", r"'\.\.'"),
                                         ("s3://b/a//c", "empty")])
def test_bad_s3_uris(uri: str, message: str) -> None:
    from mini_o3.storage.uri import parse_s3

    with pytest.raises(StorageError, match=message):
        parse_s3(uri)


def test_minio_alias_parses_like_s3() -> None:
    from mini_o3.storage.uri import parse_s3

    assert parse_s3("minio://mlpipeline/v2/artifacts/") == parse_s3("s3://mlpipeline/v2/artifacts")


# -- artifacts ------------------------------------------------------------------------------------
def test_copy_round_trip_with_manifest(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    dest_uri = str(tmp_path / "dest")
    manifest = storage.put_dir(tmp_path / "src", dest_uri, workers=3)
    assert [r["path"] for r in manifest.files] == sorted(files)
    for record in manifest.files:
        data = files[record["path"]]
        assert record["size"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest.total_bytes == sum(map(len, files.values()))
    marker = json.loads((tmp_path / "dest" / COMPLETION_MARKER).read_text())
    assert marker["files"] == manifest.files and marker["uri"] == dest_uri
    assert storage.is_complete(dest_uri) and storage.exists(dest_uri)
    assert storage.get_dir(dest_uri) == Path(dest_uri)  # local, no dest: the path itself
    copy = storage.get_dir("file://" + dest_uri, tmp_path / "copy")
    assert {p.relative_to(copy).as_posix(): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == \
        {**files, COMPLETION_MARKER: (tmp_path / "dest" / COMPLETION_MARKER).read_bytes()}
    assert storage.read_manifest(str(copy)).files == manifest.files


def test_seal_in_place_copies_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path / "run")
    before = sorted(p for p in (tmp_path / "run").rglob("*"))
    manifest = storage.mark_complete(tmp_path / "run")
    assert sorted(p for p in (tmp_path / "run").rglob("*")) == sorted(before + [tmp_path / "run" / COMPLETION_MARKER])
    assert storage.read_manifest(str(tmp_path / "run")).files == manifest.files
    # sealing again after a change re-checksums (mark_complete is the explicit re-seal)
    (tmp_path / "run" / "config.json").write_bytes(b"{}")
    assert storage.mark_complete(tmp_path / "run").by_path()["config.json"]["size"] == 2


def test_half_written_directory_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path / "ckpt")
    uri = str(tmp_path / "ckpt")
    assert storage.exists(uri) and not storage.is_complete(uri)
    with pytest.raises(IncompleteArtifactError, match=f"{uri}.*no completion marker.*did not finish"):
        storage.get_dir(uri)
    with pytest.raises(IncompleteArtifactError, match="does not exist"):
        storage.get_dir(str(tmp_path / "nothing"))


def test_failed_copy_leaves_no_marker(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    unreadable(tmp_path / "src" / "zz-unreadable.bin")
    dest = str(tmp_path / "dest")
    with pytest.raises(StorageError, match="zz-unreadable.bin"):
        storage.put_dir(tmp_path / "src", dest, workers=1)
    assert storage.exists(dest) and not storage.is_complete(dest)
    assert not list((tmp_path / "dest").rglob("*.mini-o3-part"))  # no temp files left behind
    with pytest.raises(IncompleteArtifactError, match=dest):
        storage.get_dir(dest, tmp_path / "out")


def test_complete_artifact_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    make_tree(tmp_path / "v1")
    (tmp_path / "v1" / "old-only.bin").write_bytes(b"old")
    dest = str(tmp_path / "dest")
    storage.put_dir(tmp_path / "v1", dest)
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "config.json").write_bytes(b"new")
    with pytest.raises(StorageError, match="already holds a complete artifact.*overwrite=True"):
        storage.put_dir(tmp_path / "v2", dest)
    with pytest.raises(StorageError, match="overwrite=True"):
        storage.put_dir(tmp_path / "dest", dest)  # sealing a sealed folder in place
    storage.put_dir(tmp_path / "v2", dest, overwrite=True)
    assert [r["path"] for r in storage.read_manifest(dest).files] == ["config.json"]
    assert (tmp_path / "dest" / "config.json").read_bytes() == b"new"
    assert not (tmp_path / "dest" / "old-only.bin").exists()  # stale files of the old artifact go


def test_verify_detects_corruption_and_missing_files(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "a")
    storage.mark_complete(tmp_path / "a")
    uri = str(tmp_path / "a")
    target = tmp_path / "a" / "weights/model-00001.safetensors"
    flipped = bytearray(files["weights/model-00001.safetensors"])
    flipped[1234] ^= 0xFF
    target.write_bytes(bytes(flipped))  # same size, different bytes
    with pytest.raises(IncompleteArtifactError, match=f"{uri}: file weights/model-00001.safetensors.*sha256"):
        storage.get_dir(uri)
    with pytest.raises(IncompleteArtifactError, match="sha256"):
        storage.get_dir(uri, tmp_path / "copy")
    assert not (tmp_path / "copy" / COMPLETION_MARKER).exists()
    assert storage.get_dir(uri, verify=False) == Path(uri)  # sizes only
    target.write_bytes(b"short")
    with pytest.raises(IncompleteArtifactError, match="size 5 != 300000"):
        storage.get_dir(uri, verify=False)
    target.unlink()
    with pytest.raises(IncompleteArtifactError, match="model-00001.safetensors listed in the completion marker is missing"):
        storage.get_dir(uri, verify=False)


@pytest.mark.parametrize("marker", ["not json", '{"format": "other/v9"}',
                                    json.dumps({"format": "mini-o3-artifact/v1", "uri": "x", "total_bytes": 1,
                                                "created": "now", "files": [{"path": "../../etc/passwd",
                                                                             "size": 1, "sha256": "0"}]})])
def test_malformed_or_hostile_marker_is_refused(tmp_path: Path, marker: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / COMPLETION_MARKER).write_text(marker)
    with pytest.raises(IncompleteArtifactError, match="malformed completion marker"):
        storage.get_dir(str(tmp_path / "a"), tmp_path / "out")


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a directory"):
        storage.put_dir(tmp_path / "missing", str(tmp_path / "d"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(StorageError, match="dangling symlink"):
        storage.put_dir(tmp_path / "src", str(tmp_path / "d"))
    with pytest.raises(StorageError, match="contains the other"):
        storage.put_dir(tmp_path / "src", str(tmp_path / "src" / "inner"))


def test_small_files(tmp_path: Path) -> None:
    uri = str(tmp_path / "reports" / "summary.json")
    storage.put_text(uri, '{"acc": 0.5}')
    assert storage.get_text("file://" + uri) == '{"acc": 0.5}'
    storage.put_file(Path(uri), str(tmp_path / "copy.json"))
    assert storage.get_file(str(tmp_path / "copy.json"), tmp_path / "back.json").read_text() == '{"acc": 0.5}'
    with pytest.raises(NotFoundError, match="nope.txt"):
        storage.get_text(str(tmp_path / "nope.txt"))
    with pytest.raises(NotFoundError, match="nope.txt"):
        storage.get_file(str(tmp_path / "nope.txt"), tmp_path / "x")


# -- S3 settings ----------------------------------------------------------------------------------
def test_s3_settings_from_env() -> None:
    env = {"AWS_ENDPOINT_URL": "https://generic:1", "AWS_ENDPOINT_URL_S3": "http://minio.minio:9000",
           "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "very-secret-value",
           "AWS_DEFAULT_REGION": "eu-west-1", "MINI_O3_S3_VERIFY_TLS": "false"}
    s = S3Settings.from_env(env)
    assert (s.endpoint, s.host, s.secure, s.region, s.verify_tls) == \
        ("http://minio.minio:9000", "minio.minio:9000", False, "eu-west-1", False)
    assert "very-secret-value" not in repr(s) and "very-secret-value" not in str(s)
    s = S3Settings.from_env({**env, "MINI_O3_S3_ENDPOINT": "https://s3.example.com/", "AWS_REGION": "us-west-2"})
    assert (s.endpoint, s.secure, s.region) == ("https://s3.example.com", True, "us-west-2")
    assert S3Settings.from_env({}).endpoint == "https://s3.amazonaws.com"


@pytest.mark.parametrize("env,message", [({"MINI_O3_S3_ENDPOINT": "minio:9000"}, "must be a URL"),
                                         ({"MINI_O3_S3_VERIFY_TLS": "maybe"}, "MINI_O3_S3_VERIFY_TLS"),
                                         ({"MINI_O3_S3_PART_SIZE": "1024"}, "part_size")])
def test_bad_s3_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(StorageError, match=message):
        S3Settings.from_env(env)


def test_missing_credentials_name_the_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageError, match="no S3 credentials for s3://b/x: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        storage.get_dir("s3://b/x")
