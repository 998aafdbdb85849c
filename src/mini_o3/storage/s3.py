"""S3 side of the storage API, through the ``minio`` client: parallel files, multipart parts,
sha256 in object metadata, re-stat after upload, verified downloads."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mini_o3.atomic import write_text_atomic
from mini_o3.storage.errors import (
    BucketNotFoundError,
    IncompleteArtifactError,
    NotFoundError,
    StorageError,
)
from mini_o3.storage.manifest import (
    CHUNK,
    COMPLETION_MARKER,
    ArtifactManifest,
    FileRecord,
    scan_tree,
    sha256_file,
)
from mini_o3.storage.progress import Advance, byte_progress
from mini_o3.storage.settings import S3Settings
from mini_o3.storage.transfer import commit, run_parallel, stage_stream
from mini_o3.storage.uri import S3Location

SHA_META = "sha256"  # stored as x-amz-meta-sha256
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken",
               "TokenRefreshRequired", "InvalidSecurity"}
_MISSING_CODES = {"NoSuchKey", "ResourceNotFound", "NoSuchObject"}


def _Named(provider, settings: S3Settings):  # noqa: N802 - a class made on first use (minio imported lazily)
    """``provider`` whose failures are one StorageError naming the credential source and STS endpoint."""
    from minio.credentials.providers import Provider

    class Named(Provider):
        def retrieve(self):
            try:
                return provider.retrieve()
            except Exception as exc:  # noqa: BLE001 - minio raises ValueError / urllib3 errors here
                where = (f"AssumeRoleWithWebIdentity at {settings.sts_url() or 'AWS STS'} with "
                         f"{settings.web_identity_token_file} as {settings.role_arn}"
                         if settings.credential_source == "web-identity" else "the container credentials endpoint")
                # minio's message holds the STS URL with the token in its query: drop every query string
                reason = re.sub(r"\?\S*", "?...", str(exc))
                raise StorageError(f"cannot get S3 credentials by {where}: {type(exc).__name__}: {reason}") from None

    return Named()


class S3:
    """One configured client; safe to share between threads."""

    def __init__(self, settings: S3Settings | None = None, *, pool_size: int = 32) -> None:
        import urllib3
        from minio import Minio

        self.settings = settings or S3Settings.from_env()
        s = self.settings
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=s.connect_timeout_s, read=s.read_timeout_s), maxsize=pool_size,
            cert_reqs="CERT_REQUIRED" if s.verify_tls else "CERT_NONE", ca_certs=s.ca_bundle,
            retries=urllib3.Retry(total=s.retries, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]))
        if s.credential_source in ("web-identity", "container"):
            from minio.credentials import IamAwsProvider

            # Web identity: AssumeRoleWithWebIdentity with the token file; container: the credentials URI.
            provider = IamAwsProvider(custom_endpoint=s.sts_url() if s.credential_source == "web-identity" else None,
                                      http_client=http, token_file=s.web_identity_token_file, role_arn=s.role_arn,
                                      role_session_name=s.role_session_name or "mini-o3", region=s.region)
            self.client = Minio(s.host, credentials=_Named(provider, s), secure=s.secure, region=s.region,
                                http_client=http, cert_check=s.verify_tls)
        else:
            self.client = Minio(s.host, access_key=s.access_key,
                                secret_key=s.secret_key.get_secret_value() if s.secret_key else None,
                                session_token=s.session_token.get_secret_value() if s.session_token else None,
                                secure=s.secure, region=s.region, http_client=http, cert_check=s.verify_tls)

    @contextmanager
    def errors(self, loc: S3Location | str) -> Iterator[None]:
        """Turn client and network errors into StorageErrors naming the URI and the endpoint."""
        from minio.error import MinioException, S3Error
        from urllib3.exceptions import HTTPError

        uri, endpoint = str(loc), self.settings.endpoint
        try:
            yield
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise NotFoundError(f"{uri}: no such object at {endpoint}") from exc
            if exc.code == "NoSuchBucket":
                bucket = loc.bucket if isinstance(loc, S3Location) else exc.bucket_name
                raise BucketNotFoundError(f"{uri}: bucket {bucket!r} does not exist at {endpoint}: create it "
                                          "or fix the URI") from exc
            if exc.code in _AUTH_CODES:
                raise StorageError(f"{uri}: S3 at {endpoint} refused the request ({exc.code}: {exc.message}): "
                                   "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and "
                                   "the bucket policy") from exc
            raise StorageError(f"{uri}: S3 error at {endpoint}: {exc.code}: {exc.message}") from exc
        except (HTTPError, MinioException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise StorageError(f"{uri}: cannot talk to S3 endpoint {endpoint} ({type(exc).__name__}: {reason}): "
                               "check MINI_O3_S3_ENDPOINT and the network") from exc

    # -- single objects ---------------------------------------------------------------------------
    def stat(self, loc: S3Location) -> tuple[int, str | None] | None:
        """(size, sha256 metadata) of an object, or None when there is none."""
        try:
            with self.errors(loc):
                st = self.client.stat_object(loc.bucket, loc.key)
        except NotFoundError:
            return None
        meta = {k.lower(): v for k, v in (st.metadata or {}).items()}
        return int(st.size or 0), meta.get(f"x-amz-meta-{SHA_META}")

    def exists(self, loc: S3Location) -> bool:
        if loc.key and self.stat(loc) is not None:
            return True
        try:
            with self.errors(loc):
                return any(True for _ in self.client.list_objects(loc.bucket, prefix=loc.prefix, recursive=True))
        except BucketNotFoundError:
            return False

    def read_bytes(self, loc: S3Location) -> bytes:
        with self.errors(loc):
            response = self.client.get_object(loc.bucket, loc.key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def write_bytes(self, loc: S3Location, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self.errors(loc):
            self.client.put_object(loc.bucket, loc.key, io.BytesIO(data), len(data), content_type=content_type,
                                   metadata={SHA_META: hashlib.sha256(data).hexdigest()})

    def remove(self, locs: list[S3Location]) -> None:
        from minio.deleteobjects import DeleteObject

        if not locs:
            return
        with self.errors(locs[0]):
            errors = list(self.client.remove_objects(locs[0].bucket, [DeleteObject(l.key) for l in locs]))
        if errors:
            raise StorageError(f"{locs[0]}: could not delete {len(errors)} objects: {errors[0]}")

    def check_bucket(self, loc: S3Location) -> None:
        with self.errors(loc):
            found = self.client.bucket_exists(loc.bucket)
        if not found:
            raise BucketNotFoundError(f"{loc}: bucket {loc.bucket!r} does not exist at {self.settings.endpoint}: "
                                      "create it or fix the URI")

    # -- files ------------------------------------------------------------------------------------
    def upload_file(self, path: Path, loc: S3Location, record: FileRecord, advance: Advance,
                    part_size: int | None = None) -> bool:
        """Upload one file (multipart above the part size), then re-stat it. An object already
        there with the same size and sha256 is kept (a retried upload resumes). True if sent."""
        size, sha = record["size"], record["sha256"]
        if self.stat(loc) == (size, sha):
            advance(size)
            return False
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        reader: _HashingReader | None = None
        try:
            with open(path, "rb") as handle, self.errors(loc):
                reader = _HashingReader(handle, advance)
                self.client.put_object(loc.bucket, loc.key, reader, size, content_type=content_type,
                                       metadata={SHA_META: sha}, part_size=part_size or self.settings.part_size)
        except OSError as exc:  # open / read of the local file (also: it shrank while uploading)
            raise StorageError(f"{loc}: cannot read {path} for the upload: {exc.strerror or exc}") from exc
        assert reader is not None
        if reader.digest.hexdigest() != sha:
            raise StorageError(f"{loc}: {path} changed while it was uploaded (sha256 differs); upload again")
        got = self.stat(loc)
        if got != (size, sha):
            raise StorageError(f"{loc}: verification after upload failed: the store reports (size, sha256) "
                               f"{got}, expected {(size, sha)}")
        return True

    def download_file(self, loc: S3Location, dest: Path, record: FileRecord | None, advance: Advance,
                      *, verify: bool = True, artifact_uri: str | None = None) -> FileRecord:
        """Stream an object to a temp file next to ``dest`` and rename it into place once its size
        (and, with ``verify``, sha256) matches ``record``."""
        with self.errors(loc):
            response = self.client.get_object(loc.bucket, loc.key)
            try:
                tmp, sha, size = stage_stream(dest, response.stream(CHUNK), advance)
            finally:
                response.close()
                response.release_conn()
        if record is not None and (size != record["size"] or (verify and sha != record["sha256"])):
            tmp.unlink(missing_ok=True)
            got = f"size {size} != {record['size']}" if size != record["size"] else \
                f"sha256 {sha} != {record['sha256']}"
            raise IncompleteArtifactError(f"{artifact_uri or loc}: file {record['path']} disagrees with its "
                                          f"recorded checksum ({got}): corrupted or changed after writing")
        commit(tmp, dest)
        return {"path": record["path"] if record else dest.name, "size": size, "sha256": sha}

    # -- artifacts --------------------------------------------------------------------------------
    def read_manifest(self, loc: S3Location) -> tuple[ArtifactManifest, str]:
        uri = str(loc)
        try:
            text = self.read_bytes(loc.child(COMPLETION_MARKER)).decode("utf-8")
        except NotFoundError:
            detail = ("objects are there but the writer did not finish (half-written)" if self.exists(loc)
                      else "nothing is there")
            raise IncompleteArtifactError(f"{uri}: no completion marker {COMPLETION_MARKER}: {detail}") from None
        return ArtifactManifest.from_json(text, uri), text

    def put_dir(self, src: Path, loc: S3Location, *, progress: bool, workers: int, overwrite: bool,
                part_size: int | None) -> ArtifactManifest:
        files = scan_tree(src)
        self.check_bucket(loc)
        uri = str(loc)
        old: ArtifactManifest | None = None
        marker = loc.child(COMPLETION_MARKER)
        if self.stat(marker) is not None:
            try:
                old = self.read_manifest(loc)[0]
            except IncompleteArtifactError:
                old = None
            if not overwrite:
                when = f" (sealed {old.created} by {old.writer.get('host', '?')})" if old else ""
                raise StorageError(f"{uri} already holds a complete artifact{when}; pass overwrite=True to replace it")
            self.remove([marker])  # readers must never see the old marker over new content
        with byte_progress(progress, sum(p.stat().st_size for _, p in files), f"upload {src} → {uri}") as advance:
            def one(item: tuple[str, Path]) -> FileRecord:
                rel, path = item
                record: FileRecord = {"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)}
                self.upload_file(path, loc.child(rel), record, advance, part_size)
                return record

            records = run_parallel(files, one, workers)
        manifest = ArtifactManifest.build(uri, records)
        if old is not None:
            keep = {r["path"] for r in records}
            self.remove([loc.child(r["path"]) for r in old.files if r["path"] not in keep])
        self.write_bytes(marker, manifest.to_json().encode("utf-8"), "application/json")
        return manifest

    def get_dir(self, loc: S3Location, dest: Path, manifest: ArtifactManifest, marker_text: str, *,
                progress: bool, verify: bool, workers: int) -> Path:
        uri = str(loc)
        stale = dest / COMPLETION_MARKER
        if stale.is_file() and stale.read_text(encoding="utf-8") != marker_text:
            stale.unlink()  # a crash below must not leave another artifact's marker over mixed files
        with byte_progress(progress, manifest.total_bytes, f"download {uri}") as advance:
            def one(record: FileRecord) -> None:
                target = dest / record["path"]
                if target.is_file() and target.stat().st_size == record["size"] and \
                        (not verify or sha256_file(target) == record["sha256"]):
                    advance(record["size"])
                    return
                try:
                    self.download_file(loc.child(record["path"]), target, record, advance, verify=verify,
                                       artifact_uri=uri)
                except NotFoundError:
                    raise IncompleteArtifactError(f"{uri}: file {record['path']} listed in the completion marker "
                                                  "is missing from the store") from None

            run_parallel(manifest.files, one, workers)
        write_text_atomic(dest / COMPLETION_MARKER, marker_text)
        return dest


class _HashingReader:
    """A read-only stream that hashes and reports what is read from it."""

    def __init__(self, handle: BinaryIO, advance: Advance) -> None:
        self.handle, self.advance, self.digest = handle, advance, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        self.advance(len(data))
        return data
