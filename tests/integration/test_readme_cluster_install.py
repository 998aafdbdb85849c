"""The README's cluster install matches the cluster and the chart: the install snippets are whole
shell commands whose values the chart accepts, the PVC name it tells users to pass is the one the
chart makes, the multi-user values mount the token where the client reads it, and the stated
prerequisite versions are the ones the project is built against.

Upstream rules: CUDA 13.0 needs an NVIDIA driver >= 580 on Linux (CUDA 13.0 release notes, table
"CUDA Toolkit and Corresponding Driver Versions": 580.65.06); the chart's KubeRay dependency and the
pinned kfp SDK fix the KubeRay / KFP floors; kfp 2.17.3 reads the token path from
KF_PIPELINES_SA_TOKEN_PATH (kfp/client/__init__.py:25-26)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml
from fixtures.helm import chart_fixture, helm_fixture, run_helm  # noqa: F401 (registers `helm`, `chart`)

from mini_o3.kfp import client

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Cluster install"):README.index("### Run", README.index("## Cluster install"))]
#: lowest Linux driver of each CUDA major (CUDA release notes)
MIN_DRIVER = {12: 525, 13: 580}


def _blocks() -> list[str]:
    """The indented command blocks of the Install section."""
    install = SECTION[SECTION.index("### Install"):SECTION.index("### S3 credentials")]
    return [m.group(0) for m in re.finditer(r"(?m)(^ {4,}\S.*\n?)+", install)]


def _command(block: str) -> list[str]:
    lines = [line.strip() for line in block.strip().splitlines()]
    install = [line for line in lines if not line.startswith("helm dependency")]
    assert all(line.endswith("\\") for line in install[:-1]), f"a line misses its continuation '\\':\n{block}"
    assert not install[-1].endswith("\\"), block
    done = subprocess.run(["bash", "-n"], input=block, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    return shlex.split(" ".join(line.rstrip("\\") for line in install))


def _sets(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]


def _render(helm, chart, namespace: str, sets: list[str]) -> list[dict]:
    args = ["template", "mini-o3", str(chart), "--namespace", namespace]
    for item in sets:
        args += ["--set", item]
    return [d for d in yaml.safe_load_all(run_helm(helm, *args).stdout) if d]


def test_install_snippets_are_whole_commands_the_chart_accepts(helm, chart):
    standalone, multi_user = _blocks()
    argv = _command(standalone)
    assert argv[:3] == ["helm", "install", "mini-o3"] and argv[argv.index("-n") + 1] == "kubeflow"
    manifests = _render(helm, chart, "kubeflow", _sets(argv))
    (pvc,) = [m for m in manifests if m["kind"] == "PersistentVolumeClaim" and "work" in m["metadata"]["name"]]
    assert pvc["metadata"]["name"] == "mini-o3-work"
    assert "p0_work_volume_claim=mini-o3-work" in README and "`mini-o3-work` for release `mini-o3`" in SECTION
    # the multi-user block is continuation lines of the same command
    extra = shlex.split(multi_user.replace("\\\n", " "))
    job = next(m for m in _render(helm, chart, "team-a", _sets(argv) + _sets(extra)) if m["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    token_path = env[client.TOKEN_PATH_ENV]
    assert token_path == client.DEFAULT_TOKEN_PATH
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "kfp-token"]
    assert token_path == f"{mount['mountPath']}/token" and pod["serviceAccountName"] == "default-editor"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "kfp-token"]
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"


def test_prerequisite_versions_are_the_projects():
    chart_meta = yaml.safe_load((ROOT / "helm" / "mini-o3" / "Chart.yaml").read_text())
    kuberay = next(d["version"] for d in chart_meta["dependencies"] if d["name"] == "kuberay-operator")
    assert f"KubeRay operator ≥ {'.'.join(kuberay.split('.')[:2])}" in SECTION
    kfp = re.search(r"^kfp==(\d+\.\d+)\.", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert f"Kubeflow Pipelines ≥ {kfp}" in SECTION
    cuda = {int(m) for path in (ROOT / "images").glob("*/Dockerfile")
            for m in re.findall(r"nvidia/cuda:(\d+)\.\d+", path.read_text())}
    assert cuda, "no CUDA base image found"
    assert f"NVIDIA driver ≥ {MIN_DRIVER[max(cuda)]}" in SECTION and f"CUDA {max(cuda)}.0" in SECTION
    assert "ReadWriteMany storage class" in SECTION


def test_credentials_and_ca_docs_name_what_the_code_reads():
    from mini_o3.launch.rayjob import CA_BUNDLE_PATH
    from mini_o3.storage.settings import KFP_CA_BUNDLE

    for name in ("AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL_STS",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CA_BUNDLE", KFP_CA_BUNDLE, CA_BUNDLE_PATH,
                 "ca_bundle_config_map", "ca_bundle_secret"):
        assert name in SECTION, name
