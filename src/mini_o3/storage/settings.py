"""S3 connection settings from the environment (the names the Helm chart and kfp-kubernetes
``use_secret_as_env`` inject)."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr, field_validator

from mini_o3.storage.errors import StorageError

ENDPOINT_ENVS = ("MINI_O3_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
MIN_PART_SIZE = 5 * 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class S3Settings(BaseModel):
    """Where the S3-compatible store is and how to talk to it. ``repr`` never shows secrets."""

    endpoint: str = Field("https://s3.amazonaws.com",
                          description="full URL, http:// or https:// (decides TLS); env MINI_O3_S3_ENDPOINT, "
                                      "else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL")
    access_key: str | None = Field(None, description="env AWS_ACCESS_KEY_ID")
    secret_key: SecretStr | None = Field(None, description="env AWS_SECRET_ACCESS_KEY")
    session_token: SecretStr | None = Field(None, description="env AWS_SESSION_TOKEN (temporary credentials)")
    region: str = Field("us-east-1", description="env AWS_REGION, else AWS_DEFAULT_REGION")
    verify_tls: bool = Field(True, description="check the server certificate (env MINI_O3_S3_VERIFY_TLS)")
    part_size: int = Field(64 * 1024 * 1024, ge=MIN_PART_SIZE,
                           description="multipart part size in bytes, ≥ 5 MiB (env MINI_O3_S3_PART_SIZE)")
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP connect timeout per request")
    read_timeout_s: float = Field(300.0, gt=0, description="read timeout per request")
    retries: int = Field(5, ge=0, description="retries per request (connection errors, 5xx), exponential backoff "
                                                  "(env MINI_O3_S3_RETRIES)")

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
            raise ValueError(f"S3 endpoint {value!r} must be a URL like http://minio.minio:9000 or "
                             "https://s3.amazonaws.com (scheme + host[:port], no path)")
        return value.rstrip("/")

    @property
    def secure(self) -> bool:
        return urlparse(self.endpoint).scheme == "https"

    @property
    def host(self) -> str:
        """``host[:port]`` as the minio client wants it."""
        return urlparse(self.endpoint).netloc

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> S3Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in ENDPOINT_ENVS:
            if env.get(name):
                values["endpoint"] = env[name]
                break
        for field_name, name in (("access_key", "AWS_ACCESS_KEY_ID"), ("secret_key", "AWS_SECRET_ACCESS_KEY"),
                                 ("session_token", "AWS_SESSION_TOKEN")):
            if env.get(name):
                values[field_name] = env[name]
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region:
            values["region"] = region
        tls = env.get("MINI_O3_S3_VERIFY_TLS")
        if tls:
            if tls.strip().lower() not in _TRUE | _FALSE:
                raise StorageError(f"MINI_O3_S3_VERIFY_TLS={tls!r}: expected true or false")
            values["verify_tls"] = tls.strip().lower() in _TRUE
        for field_name, name in (("part_size", "MINI_O3_S3_PART_SIZE"), ("retries", "MINI_O3_S3_RETRIES")):
            if env.get(name):
                values[field_name] = env[name]
        try:
            return cls(**values)
        except ValueError as exc:
            raise StorageError(f"bad S3 settings from the environment: {exc}") from exc

    def require_credentials(self, uri: str) -> None:
        if not self.access_key or self.secret_key is None:
            raise StorageError(f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                               f"(and MINI_O3_S3_ENDPOINT for a non-AWS store; now {self.endpoint})")
