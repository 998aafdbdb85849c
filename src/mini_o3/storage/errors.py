"""Storage errors: every message names the URI (and, for S3, the endpoint) it is about."""

from __future__ import annotations


class StorageError(RuntimeError):
    """Unreachable endpoint, bad credentials, missing bucket, bad URI, failed transfer."""


class NotFoundError(StorageError):
    """No object / file at the URI."""


class IncompleteArtifactError(StorageError):
    """The artifact has no completion marker, or its content disagrees with the marker."""


class BucketNotFoundError(StorageError):
    """The bucket of an s3:// URI does not exist."""
