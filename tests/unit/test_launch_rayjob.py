"""RayJob manifests: builder output, strict CRD-schema + controller-rule validation, settings, names."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from mini_o3.launch import (
    LaunchSettings,
    RayJobValidationError,
    SecretRef,
    build_rayjob,
    job_name,
    s3_secret_env,
    validate_rayjob,
)
from mini_o3.launch.crd_schema import (
    convert_openapi_schema,
    crd_to_json_schema,
    load_crd,
    rayjob_schema,
)
from mini_o3.launch.rayjob import controller_problems

SHARED_CRD = Path(__file__).resolve().parents[3] / "shared" / "kuberay" / "ray.io_rayjobs.yaml"
ENTRY = ["mini-o3", "stage", "rl", "--engine", "verl", "--set", "trainer.total_epochs=1 # spaces"]


def representative() -> LaunchSettings:
    return LaunchSettings(
        mode="rayjob", image="registry.local/mini-o3-rl:v1", workers=4, gpus_per_worker=8,
        node_selector={"nvidia.com/gpu.product": "H100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        env={"MINI_O3_S3_ENDPOINT": "http://minio:9000"},
        secret_env={**s3_secret_env("s3-creds"), "API_KEY": SecretRef(name="judge", key="API_KEY", optional=True)},
        service_account="pipeline-runner", pre_running_deadline_seconds=3600,
    )


def pods(manifest):
    cluster = manifest["spec"]["rayClusterSpec"]
    yield "head", cluster["headGroupSpec"]["template"]
    for group in cluster.get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]
    yield "submitter", manifest["spec"]["submitterPodTemplate"]


def test_default_settings_build_a_valid_manifest():
    m = build_rayjob("mo3-rl-abc", ["python", "-c", "print(1)"], LaunchSettings(mode="rayjob"), owner={})
    validate_rayjob(m)
    spec = m["spec"]
    assert m["apiVersion"] == "ray.io/v1" and m["kind"] == "RayJob"
    assert spec["submissionMode"] == "K8sJobMode" and spec["shutdownAfterJobFinishes"] is True
    assert (spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"], spec["backoffLimit"]) == (600, 604800, 0)
    assert spec["rayClusterSpec"]["rayVersion"] == __import__("ray").__version__
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-gpus": "0"}
    assert head["template"]["spec"]["containers"][0]["image"].endswith("/mini-o3-rl:v" + __import__("mini_o3").__version__)


def test_representative_settings(monkeypatch):
    monkeypatch.setenv("POD_NAME", "train-abc-launcher")
    monkeypatch.setenv("POD_UID", "0d4c-uid")
    monkeypatch.setenv("POD_NAMESPACE", "team-a")
    m = build_rayjob("mo3-rl-abc", ENTRY, representative(), runtime_env={"env_vars": {"X": "1"}},
                     labels={"mini-o3/run-id": "run-42"}, namespace="team-a", component="rl")
    validate_rayjob(m)
    spec = m["spec"]
    assert shlex.split(spec["entrypoint"]) == ENTRY
    assert spec["preRunningDeadlineSeconds"] == 3600 and "env_vars:\n  X: '1'" in spec["runtimeEnvYAML"]
    assert m["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "train-abc-launcher", "uid": "0d4c-uid"}]
    assert m["metadata"]["labels"]["app.kubernetes.io/component"] == "rl" and m["metadata"]["labels"]["mini-o3/run-id"] == "run-42"
    group = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert (group["groupName"], group["replicas"], group["minReplicas"], group["maxReplicas"]) == ("gpu-workers", 4, 4, 4)
    assert group["rayStartParams"] == {"num-gpus": "8"}
    res = group["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "8"
    assert group["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert "nodeSelector" not in spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]  # CPU head
    for role, pod in pods(m):
        podspec = pod["spec"]
        container = podspec["containers"][0]
        assert container["image"] == "registry.local/mini-o3-rl:v1", role
        env = {e["name"]: e for e in container["env"]}
        assert env["MINI_O3_S3_ENDPOINT"]["value"] == "http://minio:9000", role
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}, role
        assert env["API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
        assert podspec["serviceAccountName"] == "pipeline-runner"
        assert podspec["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["allowPrivilegeEscalation"] is False
        assert not any(k.startswith("app.kubernetes.io/") for k in pod["metadata"]["labels"]), role  # KubeRay's selectors
        if role != "submitter":
            assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
            assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}} in podspec["volumes"]
    assert "s3-creds" in json.dumps(m) and "secret-value" not in json.dumps(m)


def test_no_owner_reference_across_namespaces(monkeypatch):
    monkeypatch.setenv("POD_NAME", "p")
    monkeypatch.setenv("POD_UID", "u")
    monkeypatch.setenv("POD_NAMESPACE", "kubeflow")
    m = build_rayjob("mo3-rl-abc", ENTRY, LaunchSettings(mode="rayjob"), namespace="team-a")
    assert "ownerReferences" not in m["metadata"]  # the GC would delete the RayJob at once


#: The reference engine's RayJob: one CPU head pod (its driver does all the work), no GPU.
HEAD_ONLY = LaunchSettings(mode="rayjob", workers=0, gpus_per_worker=0, head_cpus="8", head_memory="32Gi", shm_size="8Gi")


def test_reference_engine_rayjob_needs_no_gpu():
    entry = ["mini-o3", "stage", "rl", "--engine", "local", "--set", "judge.enabled=false"]
    m = build_rayjob("mo3-rl-smoke", entry, HEAD_ONLY, owner={})
    validate_rayjob(m)
    assert "workerGroupSpecs" not in m["spec"]["rayClusterSpec"]
    assert "nvidia.com/gpu" not in json.dumps(m)
    cpu_workers = build_rayjob("mo3-rl-smoke", entry, HEAD_ONLY.model_copy(update={"workers": 2}), owner={})
    group = cpu_workers["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["groupName"] == "cpu-workers" and group["rayStartParams"] == {"num-gpus": "0"}
    assert "nvidia.com/gpu" not in json.dumps(cpu_workers)


def test_sft_ray_mode_worker_pods_fit_llamafactory_bundles():
    """LLaMA-Factory's Ray mode reserves {GPU: 1, CPU: 10} per GPU: an 8-GPU pod needs 82 CPUs."""
    from mini_o3.launch.presets import sft_cpus_per_worker

    assert (sft_cpus_per_worker(8), sft_cpus_per_worker(2)) == ("82", "22")
    entry = ["mini-o3", "stage", "sft", "--set", "launch.mode=ray", "--set", "launch.ray_num_workers=16"]
    s = LaunchSettings(mode="rayjob", workers=2, gpus_per_worker=8, cpus_per_worker=sft_cpus_per_worker(8))
    group = build_rayjob("mo3-sft-x", entry, s, owner={})["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "82"


def broken(mutate):
    m = build_rayjob("mo3-rl-abc", ENTRY, representative(), owner={})
    mutate(m)
    with pytest.raises(RayJobValidationError) as info:
        validate_rayjob(m)
    return str(info.value)


@pytest.mark.parametrize("mutate,message", [
    (lambda m: m["spec"].update(shutdownAfterJobFinish=True), "spec.shutdownAfterJobFinish: unknown field"),
    (lambda m: m["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="Always"),
     "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].imagePullPolicyy: unknown field"),
    (lambda m: m["spec"].update(entrypoint=123), "spec.entrypoint: 123 is not of type 'string'"),
    (lambda m: m["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas="4"),
     "spec.rayClusterSpec.workerGroupSpecs[0].replicas: '4' is not of type 'integer'"),
    (lambda m: m["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"].update(memory="128 GB"),
     "spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].resources.limits.memory: '128 GB' does not match"),
    (lambda m: m["spec"].update(shutdownAfterJobFinishes=False), "spec.ttlSecondsAfterFinished: needs shutdownAfterJobFinishes: true"),
    (lambda m: m["metadata"].update(name="mo3-" + "x" * 44), "metadata.name: 'mo3-xxxx"),
    (lambda m: m["metadata"].update(name="Mo3_RL"), "is not a DNS-1035 label"),
    (lambda m: m["spec"].update(runtimeEnvYAML="env_vars: [unclosed"), "spec.runtimeEnvYAML: not valid YAML"),
    (lambda m: m["spec"].update(submissionMode="K8sJobMod"), "spec.submissionMode: 'K8sJobMod'; the launcher runs K8sJobMode jobs only"),
    (lambda m: m["spec"].update(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds: must be positive"),
    (lambda m: m["spec"].update(clusterSelector={"ray.io/cluster": "c"}), "spec.clusterSelector: not supported"),
    (lambda m: m["spec"].update(suspend=True), "spec.suspend: not supported"),
    (lambda m: m["spec"].pop("rayClusterSpec"), "spec.rayClusterSpec: required"),
    (lambda m: m["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplicas=5), "minReplicas 5 > maxReplicas 4"),
    (lambda m: m["metadata"]["labels"].update({"mini-o3/run-id": "a" * 64}), "invalid label value"),
])
def test_invalid_manifests_are_rejected_naming_the_field(mutate, message):
    assert message in broken(mutate)


def test_too_long_name_message():
    text = broken(lambda m: m["metadata"].update(name="mo3-" + "x" * 44))
    assert "48 characters; a RayJob name has at most 47" in text


def test_job_name_examples():
    name = job_name("mo3-rl", "d3f1c0de-7a0b-4a8e-9a0e-5a7e4c2f1b9a")
    assert name == job_name("mo3-rl", "d3f1c0de-7a0b-4a8e-9a0e-5a7e4c2f1b9a") and len(name) <= 47
    assert name.startswith("mo3-rl-d3f1c0de-")
    assert job_name("mo3-rl", "x" * 100 + "a") != job_name("mo3-rl", "x" * 100 + "b")  # hash keeps them apart
    assert job_name("9-Stage!", "RUN_1")[0].isalpha()
    with pytest.raises(ValueError, match="run_id"):
        job_name("mo3", "")


@hsettings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=60), st.text(min_size=1, max_size=200))
def test_job_name_is_always_a_valid_rayjob_name(prefix, run_id):
    name = job_name(prefix, run_id)
    assert len(name) <= 47 and name[0].isalpha() and name[-1].isalnum()
    assert all(c.isdigit() or ("a" <= c <= "z") or c == "-" for c in name)
    problems = controller_problems({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name}, "spec": {}})
    assert not [p for p in problems if p.startswith("metadata")]


@pytest.mark.parametrize("fields,message", [
    ({"cpus_per_worker": "sixteen"}, "cpus_per_worker"),
    ({"shm_size": "64 GB"}, "shm_size"),
    ({"env": {"1BAD": "x"}}, "invalid env variable name"),
    ({"env": {"K": "v"}, "secret_env": {"K": {"name": "s", "key": "k"}}}, "env and secret_env both set"),
    ({"secret_env": {"K": {"name": "Bad_Secret", "key": "k"}}}, "not a DNS-1123 subdomain"),
    ({"workers": -1}, "workers"),
    ({"mode": "k8s"}, "mode"),
    ({"ttl_seconds_after_finshed": 1}, "ttl_seconds_after_finshed"),
    ({"namespace": "Team_A"}, "not a DNS-1123 label"),
    ({"work_volume_claim": "Shared_Work"}, "work_volume_claim 'Shared_Work' is not a PersistentVolumeClaim name"),
    ({"work_mount_path": "relative/dir"}, "work_mount_path 'relative/dir' must be an absolute path"),
    ({"work_mount_path": "/dev/shm"}, "work_mount_path '/dev/shm'"),
])
def test_bad_settings_are_named(fields, message):
    with pytest.raises(ValidationError, match=message):
        LaunchSettings(**fields)


def test_crd_conversion_rules():
    node = {
        "type": "object", "required": ["a", "b", "default"], "description": "dropped",
        "properties": {
            "a": {"type": "integer", "default": 0, "format": "int32"},
            "b": {"x-kubernetes-int-or-string": True, "pattern": "^[0-9]+m?$"},
            "default": {"type": "string", "nullable": True},  # a property *named* default stays a property
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"k": {"type": "string"}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}},
                     "x-kubernetes-list-type": "atomic"},
        },
    }
    out = convert_openapi_schema(node)
    assert out["required"] == ["b", "default"]  # a has a default: the API server fills it
    assert out["additionalProperties"] is False and "description" not in out
    assert out["properties"]["a"] == {"type": "integer", "default": 0}
    assert out["properties"]["b"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert out["properties"]["default"]["type"] == ["string", "null"]
    assert "additionalProperties" not in out["properties"]["open"]
    assert out["properties"]["list"]["items"]["additionalProperties"] is False
    assert "x-kubernetes-list-type" not in out["properties"]["list"]
    assert "additionalProperties" not in convert_openapi_schema(node, strict=False)
    assert node["properties"]["a"]["format"] == "int32"  # input untouched


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CRD.exists(), reason=f"KubeRay CRD not present at {SHARED_CRD}")
def test_packaged_schema_is_the_conversion_of_the_kuberay_crd():
    packaged = copy.deepcopy(rayjob_schema())
    assert "Apache License 2.0" in packaged.pop("$comment") and "feeaf72f" in json.dumps(rayjob_schema())
    assert crd_to_json_schema(load_crd(SHARED_CRD)) == packaged


def test_schema_is_package_data():
    schema = rayjob_schema()
    assert schema["title"] == "RayJob ray.io/v1" and schema["properties"]["spec"]["additionalProperties"] is False


def test_work_volume_is_mounted_on_head_and_workers_with_one_work_dir():
    """Every Ray pod that runs stage code sees the same work folder on the shared claim; the
    submitter (it only runs `ray job submit`) needs none of it."""
    s = LaunchSettings(**{**representative().model_dump(), "work_volume_claim": "mini-o3-work", "work_mount_path": "/mnt/work/"})
    assert s.work_mount_path == "/mnt/work"
    m = build_rayjob("mo3-rl-abc", ENTRY, s, owner={})
    validate_rayjob(m)  # strict CRD schema: the volume and mount are well-formed
    seen = []
    for group, pod in pods(m):
        spec, main = pod["spec"], pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in main.get("env", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {v["name"]: v["mountPath"] for v in main.get("volumeMounts", [])}
        if group == "submitter":
            assert "MINI_O3_WORK_DIR" not in env and "mini-o3-work" not in volumes and not mounts
            continue
        seen.append(group)
        assert volumes["mini-o3-work"] == {"name": "mini-o3-work", "persistentVolumeClaim": {"claimName": "mini-o3-work"}}
        assert mounts == {"dshm": "/dev/shm", "mini-o3-work": "/mnt/work"}
        assert env["MINI_O3_WORK_DIR"] == "/mnt/work/mo3-rl-abc"
    assert seen == ["head", "gpu-workers"]


def test_work_dir_env_is_the_one_the_stages_read(tmp_path, monkeypatch):
    from mini_o3.launch.settings import WORK_DIR_ENV
    from mini_o3.stages.common import work_dir

    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "mo3-rl-abc"))
    with work_dir("rl") as wd:
        assert wd == (tmp_path / "mo3-rl-abc" / "rl").resolve()


def test_explicit_work_dir_env_wins_over_the_claims_default():
    s = LaunchSettings(**{**representative().model_dump(), "work_volume_claim": "shared",
                          "env": {"MINI_O3_WORK_DIR": "/mnt/mini-o3-work/mine"}})
    head = build_rayjob("mo3-rl-abc", ENTRY, s, owner={})["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    env = [e for e in head["spec"]["containers"][0]["env"] if e["name"] == "MINI_O3_WORK_DIR"]
    assert env == [{"name": "MINI_O3_WORK_DIR", "value": "/mnt/mini-o3-work/mine"}]


def test_no_claim_no_work_volume_and_empty_claim_is_none():
    m = build_rayjob("mo3-rl-abc", ENTRY, representative(), owner={})
    assert "mini-o3-work" not in json.dumps(m) and "MINI_O3_WORK_DIR" not in json.dumps(m)
    assert LaunchSettings(work_volume_claim="").work_volume_claim is None


def test_multi_pod_rayjob_without_claim_is_refused_before_anything_is_created():
    from mini_o3.launch import LaunchError, run_rayjob, run_remote, shared_work_problem

    class NoCluster:  # the launcher must not even be asked to create the RayJob
        def launch(self, *args, **kwargs):
            raise AssertionError("a RayJob was launched")

    with pytest.raises(LaunchError, match="launch.work_volume_claim is not set.*4 worker pod") as info:
        run_rayjob(ENTRY, representative(), name="mo3-rl-abc", launcher=NoCluster())
    assert "p0_work_volume_claim" in str(info.value) and "ReadWriteMany" in str(info.value)
    with pytest.raises(LaunchError, match="work_volume_claim"):  # the one call the KFP steps make
        run_remote(ENTRY, representative(), name="mo3-rl-abc", echo=lambda line: None)
    assert shared_work_problem(LaunchSettings(mode="rayjob", workers=4, work_volume_claim="w")) is None
    assert shared_work_problem(HEAD_ONLY) is None  # head-only smoke: no claim needed
    assert shared_work_problem(LaunchSettings(mode="ray", workers=4)) is None  # existing cluster: the user's storage
