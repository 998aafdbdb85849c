"""Pods are schedulable under ordinary namespace policies (requirement 7).

* Every KFP task pod gets CPU and memory requests and limits as the KFP 2.17.0 driver builds them
  (kubeflow/pipelines tag 2.17.0, commit 4a3592cb2dd0a91a4652ab93893ec8beda1f3158,
  ``backend/src/v2/driver/driver.go:173-198,360-412``; rule in ``fixtures/kfp_driver.py``): a
  ResourceQuota on ``requests.*`` / ``limits.*`` rejects a pod that lacks them (Kubernetes
  admission, ``plugin/pkg/admission/resourcequota``).
* The RayJob's Ray pods (head, workers, submitter) run as the pipeline's service account, carry
  ``sidecar.istio.io/inject: "false"`` (an injected sidecar keeps the K8sJobMode submitter pod, a
  ``batch/v1`` Job, from completing: KubeRay v1.7.0 ``common/job.go`` runs ``ray job logs
  --follow`` in it and waits on the pod) and ask for the pipeline's GPU resource name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fixtures import kfp_driver as driver

from mini_o3.kfp.review import rayjob_for
from mini_o3.launch import validate_rayjob

REPO = Path(__file__).resolve().parents[2]
VOLUME = {"p0_work_volume_claim": "mini-o3-work"}


def _pods(manifest: dict) -> list[dict]:
    spec = manifest["spec"]
    cluster = spec["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster.get("workerGroupSpecs", [])),
            spec["submitterPodTemplate"]]


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_every_kfp_task_pod_gets_cpu_and_memory_requests_and_limits(name):
    spec = next(yaml.safe_load_all((REPO / "pipelines" / f"{name}.yaml").read_text()))
    executors = spec["deploymentSpec"]["executors"]
    for task in driver.executor_tasks(spec):
        got = driver.pod_resources(executors[task.executor]["container"], task.params)
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(got[part]), f"{task.task}: {part} {got[part]}"


@pytest.mark.slow
@pytest.mark.parametrize("stage, params", [("rl", VOLUME), ("sft", {**VOLUME, "p2_sft_launch_mode": "rayjob"})])
def test_ray_pods_run_as_the_pipelines_account_without_istio_sidecars(stage, params):
    manifest = rayjob_for(stage, params)
    for pod in _pods(manifest):
        assert pod["spec"]["serviceAccountName"] == "mini-o3"
        assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        for container in pod["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    other = rayjob_for(stage, {**params, "p0_ray_service_account": "team-ray"})
    assert {p["spec"]["serviceAccountName"] for p in _pods(other)} == {"team-ray"}
    default = rayjob_for(stage, {**params, "p0_ray_service_account": ""})
    assert not any("serviceAccountName" in p["spec"] for p in _pods(default))


@pytest.mark.slow
@pytest.mark.parametrize("stage, params", [("rl", VOLUME), ("sft", {**VOLUME, "p2_sft_launch_mode": "rayjob"})])
def test_ray_workers_ask_for_the_pipelines_gpu_resource(stage, params):
    manifest = rayjob_for(stage, {**params, "p0_gpu_type": "amd.com/gpu"})
    validate_rayjob(manifest)
    (group,) = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    resources = group["template"]["spec"]["containers"][0]["resources"]
    for part in ("requests", "limits"):
        assert resources[part]["amd.com/gpu"] == "8" and "nvidia.com/gpu" not in resources[part]
    assert group["rayStartParams"]["num-gpus"] == "8"  # Ray sees the GPUs whatever their resource name


def test_bad_gpu_resource_and_account_names_are_refused():
    from mini_o3.launch import LaunchSettings

    with pytest.raises(ValueError, match="gpu_resource 'nvidia gpu'"):
        LaunchSettings(gpu_resource="nvidia gpu")
    with pytest.raises(ValueError, match="service_account 'Team_Ray'"):
        LaunchSettings(service_account="Team_Ray")
