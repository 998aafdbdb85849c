"""S3 connection settings from the environment (the names the Helm chart and kfp-kubernetes
``use_secret_as_env`` inject, and the standard AWS ones).

Credentials follow the AWS chain as far as it applies to pods, first match wins:

1. static keys: ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``); empty
   values count as unset, so a Secret with empty keys falls through;
2. web identity (EKS IRSA, MinIO / Ceph STS): ``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``
   (``AWS_ROLE_SESSION_NAME``), exchanged with AssumeRoleWithWebIdentity at ``AWS_ENDPOINT_URL_STS``
   (default: ``sts.<region>.amazonaws.com`` for AWS, else the S3 endpoint itself, as MinIO serves STS);
3. container credentials (EKS Pod Identity, ECS): ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` /
   ``..._RELATIVE_URI`` (+ ``AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]``).

2 and 3 use the minio client's ``IamAwsProvider``, which re-exchanges the (rotated) token before the
temporary keys expire. ``AWS_CA_BUNDLE`` (else KFP's custom-CA mount ``/kfp/certs/ca.crt`` when it
exists) is the CA bundle for the S3 and STS endpoints.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr, field_validator

from mini_o3.storage.errors import StorageError

ENDPOINT_ENVS = ("MINI_O3_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
#: Where the KFP 2.17 backend mounts its custom CA bundle in executor pods (kubeflow/pipelines
#: backend/src/apiserver/common/const.go CustomCaCertPath; argocompiler ConfigureCustomCABundle).
KFP_CA_BUNDLE = "/kfp/certs/ca.crt"
CONTAINER_CREDENTIAL_ENVS = ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
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
    web_identity_token_file: str | None = Field(None, description="env AWS_WEB_IDENTITY_TOKEN_FILE (IRSA / STS)")
    role_arn: str | None = Field(None, description="env AWS_ROLE_ARN: the role the web identity assumes")
    role_session_name: str | None = Field(None, description="env AWS_ROLE_SESSION_NAME")
    sts_endpoint: str | None = Field(None, description="env AWS_ENDPOINT_URL_STS (default: see module doc)")
    container_credentials: bool = Field(False, description="AWS_CONTAINER_CREDENTIALS_* set (EKS Pod Identity, ECS)")
    ca_bundle: str | None = Field(None, description="CA bundle file: env AWS_CA_BUNDLE, else /kfp/certs/ca.crt "
                                                    "when it exists")
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
        for field_name, name in (("web_identity_token_file", "AWS_WEB_IDENTITY_TOKEN_FILE"), ("role_arn", "AWS_ROLE_ARN"),
                                 ("role_session_name", "AWS_ROLE_SESSION_NAME"), ("sts_endpoint", "AWS_ENDPOINT_URL_STS")):
            if env.get(name):
                values[field_name] = env[name]
        values["container_credentials"] = any(env.get(name) for name in CONTAINER_CREDENTIAL_ENVS)
        ca_bundle = env.get("AWS_CA_BUNDLE") or (KFP_CA_BUNDLE if os.path.isfile(KFP_CA_BUNDLE) else None)
        if ca_bundle:
            if not os.path.isfile(ca_bundle):
                raise StorageError(f"AWS_CA_BUNDLE={ca_bundle}: no such file (mount the CA bundle there or unset it)")
            values["ca_bundle"] = ca_bundle
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

    @property
    def credential_source(self) -> str | None:
        """``static`` | ``web-identity`` | ``container`` (module doc), or None when nothing is set."""
        if self.access_key and self.secret_key is not None and self.secret_key.get_secret_value():
            return "static"
        if self.web_identity_token_file:
            return "web-identity"
        if self.container_credentials:
            return "container"
        return None

    def sts_url(self) -> str | None:
        """The STS endpoint for web identity (None: the minio client's AWS default for the region)."""
        if self.sts_endpoint:
            return self.sts_endpoint.rstrip("/")
        host = urlparse(self.endpoint).hostname or ""
        return None if host == "amazonaws.com" or host.endswith(".amazonaws.com") else self.endpoint

    def require_credentials(self, uri: str) -> None:
        if self.credential_source is None:
            raise StorageError(f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                               "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA / STS), or run with EKS Pod "
                               f"Identity (and MINI_O3_S3_ENDPOINT for a non-AWS store; now {self.endpoint})")
        if self.credential_source == "web-identity" and not self.role_arn:
            raise StorageError(f"AWS_WEB_IDENTITY_TOKEN_FILE={self.web_identity_token_file} is set but AWS_ROLE_ARN "
                               f"is not: name the role to assume for {uri}")
