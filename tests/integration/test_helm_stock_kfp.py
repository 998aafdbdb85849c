"""The chart installs next to a stock KFP: KFP 2.17 already ships a ``kfp-launcher`` ConfigMap in its
namespace (kubeflow/pipelines 2.17.0 manifests/kustomize/base/pipeline/kfp-launcher-configmap.yaml;
in multi-user mode the profile controller writes one per profile namespace:
manifests/kustomize/base/installs/multi-user/pipelines-profile-controller/sync.py:281), and Helm refuses to install over a
resource it does not own (meta.helm.sh/release-name / release-namespace annotations). So
``kfp.launcherConfigMap.create`` is off by default, and when on, the template looks the ConfigMap up
and fails with the value's name unless it is this release's own (an upgrade). Rendered with the
pinned Helm's server-side dry run against a fake API server (``lookup`` is empty offline)."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from fixtures.helm import chart_fixture, helm_fixture  # noqa: F401 (registers `helm`, `chart`)
from fixtures.kube_api import FakeKubeAPI

STOCK = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kfp-launcher", "namespace": "ml"},
         "data": {"defaultPipelineRoot": "minio://mlpipeline/v2/artifacts"}}
OURS = {**STOCK, "metadata": {**STOCK["metadata"], "labels": {"app.kubernetes.io/managed-by": "Helm"},
                              "annotations": {"meta.helm.sh/release-name": "rel", "meta.helm.sh/release-namespace": "ml"}}}
OTHER = {**STOCK, "metadata": {**STOCK["metadata"], "annotations": {"meta.helm.sh/release-name": "old",
                                                                    "meta.helm.sh/release-namespace": "ml"}}}


def dry_run(helm, chart, tmp_path, existing: dict | None, *sets: str) -> subprocess.CompletedProcess:
    objects = {("configmaps", "ml", "kfp-launcher"): existing} if existing else {}
    with FakeKubeAPI(objects) as api:
        env = {**os.environ, "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig"))}
        args = ["template", "rel", str(chart), "--namespace", "ml", "--dry-run=server", "--disable-openapi-validation"]
        for item in sets:
            args += ["--set", item]
        done = subprocess.run([*helm, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert "/api/v1/namespaces/ml/configmaps/kfp-launcher" in api.requests or not sets, api.requests
    return done


def launcher_configmaps(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    return [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kfp-launcher"]


def test_default_leaves_kfps_configmap_alone(helm, chart, tmp_path):
    assert launcher_configmaps(dry_run(helm, chart, tmp_path, STOCK)) == []


@pytest.mark.parametrize(("existing", "owner"), [(STOCK, ""), (OTHER, " and belongs to release ml/old")])
def test_create_over_an_existing_configmap_fails_naming_the_value(helm, chart, tmp_path, existing, owner):
    done = dry_run(helm, chart, tmp_path, existing, "kfp.launcherConfigMap.create=true")
    assert done.returncode != 0
    assert (f"kfp.launcherConfigMap.create=true, but ConfigMap ml/kfp-launcher already exists{owner} (KFP ships one): "
            "keep kfp.launcherConfigMap.create=false") in done.stderr


@pytest.mark.parametrize("existing", [None, OURS], ids=["fresh-namespace", "upgrade-of-this-release"])
def test_create_renders_when_nothing_or_our_own_is_there(helm, chart, tmp_path, existing):
    (config,) = launcher_configmaps(dry_run(helm, chart, tmp_path, existing, "kfp.launcherConfigMap.create=true"))
    assert config["data"]["defaultPipelineRoot"] == "s3://mini-o3/kfp"
