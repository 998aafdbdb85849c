"""A CA bundle for Ray pods: ``launch.ca_bundle_config_map`` / ``ca_bundle_secret`` mount the bundle on
the head and worker pods and point ``AWS_CA_BUNDLE`` at it, and ``mini_o3.storage`` verifies the S3
endpoint's certificate against ``AWS_CA_BUNDLE`` (here: a private CA and an HTTPS endpoint on loopback).
The manifests pass the KubeRay v1.7.0 RayJob CRD schema (``validate_rayjob``)."""

from __future__ import annotations

import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mini_o3.launch import LaunchSettings, build_rayjob
from mini_o3.launch.rayjob import CA_BUNDLE_PATH
from mini_o3.storage import StorageError
from mini_o3.storage.s3 import S3
from mini_o3.storage.settings import S3Settings


def _pods(manifest: dict) -> dict[str, dict]:
    cluster = manifest["spec"]["rayClusterSpec"]
    return {"head": cluster["headGroupSpec"]["template"]["spec"],
            "worker": cluster["workerGroupSpecs"][0]["template"]["spec"],
            "submitter": manifest["spec"]["submitterPodTemplate"]["spec"]}


@pytest.mark.parametrize(("field", "source"), [("ca_bundle_config_map", "configMap"), ("ca_bundle_secret", "secret")])
def test_ray_pods_get_the_ca_bundle(field, source):
    settings = LaunchSettings(mode="rayjob", workers=1, work_volume_claim="work", image="r/mini-o3-rl:1",
                              ca_bundle_key="corp.pem", **{field: "corp-ca"})
    pods = _pods(build_rayjob("mo3-rl-x", ["mini-o3", "stage", "rl"], settings, namespace="ml"))
    for role in ("head", "worker"):
        spec = pods[role]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "mini-o3-ca"]
        ref = volume[source]
        assert ref.get("name", ref.get("secretName")) == "corp-ca" and ref["items"] == [{"key": "corp.pem", "path": "ca.crt"}]
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "mini-o3-ca"]
        assert mount == {"name": "mini-o3-ca", "mountPath": "/etc/mini-o3/ca", "readOnly": True}
        assert {"name": "AWS_CA_BUNDLE", "value": CA_BUNDLE_PATH} in spec["containers"][0]["env"]
    assert "volumes" not in pods["submitter"]


def test_no_bundle_no_volume_and_one_source_only():
    pods = _pods(build_rayjob("mo3-rl-x", ["x"], LaunchSettings(mode="rayjob", workers=1, work_volume_claim="w"),
                              namespace="ml"))
    assert all(v["name"] != "mini-o3-ca" for v in pods["head"]["volumes"])
    with pytest.raises(ValueError, match="ca_bundle_config_map or ca_bundle_secret, not both"):
        LaunchSettings(ca_bundle_config_map="a", ca_bundle_secret="b")
    with pytest.raises(ValueError, match="not a ConfigMap / Secret name"):
        LaunchSettings(ca_bundle_config_map="Corp_CA")


@pytest.fixture(scope="module")
def https_store(tmp_path_factory):
    """An HTTPS 'S3 endpoint' on 127.0.0.1 whose certificate is signed by a private CA."""
    d = tmp_path_factory.mktemp("pki")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=mini-o3 test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.crt",
        "-days", "2", "-extfile", "ext.cnf")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_HEAD(self):  # HEAD bucket: it exists
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "srv.crt", d / "srv.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()  # fast shutdown()
    yield f"https://127.0.0.1:{server.server_address[1]}", d / "ca.crt"
    server.shutdown()


@pytest.mark.slow
def test_storage_verifies_the_endpoint_with_aws_ca_bundle(https_store, monkeypatch):
    endpoint, ca = https_store
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "k")
    monkeypatch.setenv("MINI_O3_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("MINI_O3_S3_RETRIES", "0")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with pytest.raises(StorageError, match="cannot talk to S3 endpoint .*CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        s3 = S3(S3Settings.from_env())
        with s3.errors("s3://bucket"):
            s3.client.bucket_exists("bucket")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
    s3 = S3(S3Settings.from_env())
    with s3.errors("s3://bucket"):
        assert s3.client.bucket_exists("bucket")
