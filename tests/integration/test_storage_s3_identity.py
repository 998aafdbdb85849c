"""S3 credentials by the standard AWS chain: static keys, else a web identity (EKS IRSA, MinIO STS)
exchanged with AssumeRoleWithWebIdentity through the minio client's ``IamAwsProvider``; and a CA
bundle for the endpoints. Against the moto store of fixtures/s3.py (IAM auth on, so a request
without the right keys is refused) and a small STS double on loopback.

Upstream rules: AssumeRoleWithWebIdentity is an unsigned POST with ``WebIdentityToken``, ``RoleArn``
and ``RoleSessionName`` whose XML answer carries ``Credentials/AccessKeyId, SecretAccessKey,
SessionToken, Expiration`` (minio 7.2.20 minio/credentials/providers.py:661-705, ``_parse_credentials``
:60); ``IamAwsProvider`` takes the token file from ``AWS_WEB_IDENTITY_TOKEN_FILE`` and the role from
``AWS_ROLE_ARN`` (:395-440) and re-reads the token file whenever the keys expire (:466-491) — the
kubelet rotates projected tokens. AWS SDKs read the CA bundle from ``AWS_CA_BUNDLE``; the KFP 2.17
backend mounts its custom CA at /kfp/certs/ca.crt (backend/src/apiserver/common/const.go:71).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from fixtures.s3 import S3Server

from mini_o3 import storage
from mini_o3.storage import StorageError
from mini_o3.storage.settings import S3Settings

ROLE = "arn:aws:iam::123456789012:role/mini-o3-s3"


class FakeSTS:
    """AssumeRoleWithWebIdentity: answers with ``keys`` (access key, secret, session token) when the
    token is one of ``tokens``, else 403."""

    def __init__(self, keys: tuple[str, str, str], tokens: set[str]) -> None:
        self.keys, self.tokens, self.calls = keys, tokens, []
        sts = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                sts.calls.append(query)
                ok = query.get("Action") == "AssumeRoleWithWebIdentity" and query.get("WebIdentityToken") in sts.tokens
                expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
                body = (f"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
                        f"<AccessKeyId>{sts.keys[0]}</AccessKeyId><SecretAccessKey>{sts.keys[1]}</SecretAccessKey>"
                        f"<SessionToken>{sts.keys[2]}</SessionToken><Expiration>{expiry}</Expiration></Credentials>"
                        f"</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>" if ok else
                        "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>").encode()
                self.send_response(200 if ok else 403)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _role_session(endpoint: str) -> tuple[str, str, str]:
    """Temporary keys of a moto role allowed s3:* (what a real STS would hand out for the token); the
    store accepts them only with their session token."""
    import json

    import boto3
    from fixtures.s3 import REGION, _set_auth

    _set_auth(endpoint, 3)  # create_role, put_role_policy, assume: then IAM auth is on again
    kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam = boto3.client("iam", **kw)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Federated": "oidc"},
                                                     "Action": "sts:AssumeRoleWithWebIdentity"}]}
    name = f"mini-o3-s3-{datetime.now().strftime('%H%M%S%f')}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    keys = boto3.client("sts", **kw).assume_role_with_web_identity(
        RoleArn=arn, RoleSessionName="fixture", WebIdentityToken="fixture-token")["Credentials"]
    return keys["AccessKeyId"], keys["SecretAccessKey"], keys["SessionToken"]


@pytest.fixture
def web_identity(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No static keys (the Secret's are empty, as for an IRSA install), a projected token file and a role."""
    sts = FakeSTS(_role_session(s3_server.endpoint), {"projected-token-1"})
    token = tmp_path / "token"
    token.write_text("projected-token-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
    yield sts
    sts.close()


def test_web_identity_credentials_read_and_write(s3_server: S3Server, web_identity: FakeSTS, tmp_path: Path) -> None:
    assert S3Settings.from_env().credential_source == "web-identity"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("via web identity")
    storage.put_dir(tmp_path / "src", s3_server.uri("wi"))
    assert storage.get_text(s3_server.uri("wi", "a.txt")) == "via web identity"
    (call, *_) = web_identity.calls
    assert call["WebIdentityToken"] == "projected-token-1" and call["RoleArn"] == ROLE and call["RoleSessionName"]


def test_a_refused_web_identity_is_one_clear_error_without_the_token(s3_server: S3Server, web_identity: FakeSTS,
                                                                     tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "token").write_text("stale-token-xyz")
    with pytest.raises(StorageError, match="cannot get S3 credentials by AssumeRoleWithWebIdentity at "
                                           f"{web_identity.url}") as info:
        storage.get_text(s3_server.uri("wi", "a.txt"))
    assert "stale-token-xyz" not in str(info.value) and ROLE in str(info.value)
    monkeypatch.delenv("AWS_ROLE_ARN")
    with pytest.raises(StorageError, match="AWS_WEB_IDENTITY_TOKEN_FILE=.* is set but AWS_ROLE_ARN is not"):
        storage.get_text(s3_server.uri("wi", "a.txt"))


def test_static_keys_come_first_and_nothing_is_one_clear_error(s3_server: S3Server, monkeypatch) -> None:
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token")
    assert S3Settings.from_env().credential_source == "static"  # the fixture's keys win
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name)
    with pytest.raises(StorageError, match="no S3 credentials .* AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN"):
        storage.exists(s3_server.uri("x"))
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials")
    assert S3Settings.from_env().credential_source == "container"  # EKS Pod Identity


@pytest.mark.parametrize(("endpoint", "sts"), [("https://s3.eu-west-1.amazonaws.com", None),
                                               ("http://minio.storage:9000", "http://minio.storage:9000")])
def test_sts_endpoint_defaults(endpoint: str, sts: str | None) -> None:
    assert S3Settings(endpoint=endpoint).sts_url() == sts


def test_ca_bundle_from_the_aws_variable(tmp_path: Path, monkeypatch) -> None:
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    assert S3Settings.from_env().ca_bundle == str(bundle)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.crt"))
    with pytest.raises(StorageError, match="AWS_CA_BUNDLE=.*missing.crt: no such file"):
        S3Settings.from_env()
