"""Pod resources the KFP 2.17.0 driver builds from our compiled packages (requirement: GPU limits
reach the pods).

Upstream rules (kubeflow/pipelines tag 2.17.0, commit 4a3592cb2dd0a91a4652ab93893ec8beda1f3158),
re-stated in ``fixtures/kfp_driver.py``: ``backend/src/v2/driver/resolve.go:818-831``
(``resolvePodSpecInputRuntimeParameter`` returns ``GetStringValue()``, so a NUMBER parameter resolves
to ``""``), ``backend/src/v2/driver/driver.go:414-446`` (the accelerator limit is set only for a
non-empty count) and ``driver.go:173-198`` (``getPodResource``: CPU / memory go through
``ParseQuantity``, ``""`` fails the task).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fixtures import kfp_driver as driver

from mini_o3.kfp import bodies
from mini_o3.stages import StageError

pytestmark = pytest.mark.slow  # the KFP driver's rules on compiled packages

REPO = Path(__file__).resolve().parents[2]
#: executor → the root parameter of its GPU count, per pipeline (the GPU pods we ship).
GPU_EXECUTORS = {
    # evaluate-2: the RL model; evaluate-4 / -6: the base and SFT models of the learning table
    "train": {"exec-sft": "p2_sft_gpus", "exec-rl": "p3_rl_gpus_per_worker", "exec-evaluate-2": "p4_eval_gpus",
              "exec-evaluate-4": "p4_eval_gpus", "exec-evaluate-6": "p4_eval_gpus"},
    "evaluate": {"exec-evaluate-2": "gpus"},
}
GPU_TYPE = {"train": "p0_gpu_type", "evaluate": "gpu_type"}


def _package(name: str) -> dict:
    return next(yaml.safe_load_all((REPO / "pipelines" / f"{name}.yaml").read_text()))


def _resources(spec: dict, given: dict | None = None) -> dict[str, dict]:
    executors = spec["deploymentSpec"]["executors"]
    out = {}
    for task in driver.executor_tasks(spec, given):
        container = executors[task.executor]["container"]
        if container.get("resources"):
            out[task.executor] = driver.pod_resources(container, task.params)
    return out


def test_the_rule_matches_the_drivers_own_cases():
    """resolvePodSpecInputRuntimeParameter on the cases of util_test.go:298-340 (2.17.0), plus the
    kinds our IR produces: a NUMBER value resolves to "" (``GetStringValue`` of a number_value)."""
    values = {"pipelinechannel--": driver.Value("STRING", "test1"),
              "pipelinechannel--someParameterName": driver.Value("STRING", "test2"),
              "someParameterName": driver.Value("STRING", "test3")}
    assert driver.resolve_pod_spec_param("{{$.inputs.parameters['pipelinechannel--someParameterName']}}", values) == "test2"
    with pytest.raises(driver.DriverError):
        driver.resolve_pod_spec_param("{{$.inputs.parameters['pipelinechannel--someParameterName']}}",
                                      {"doesNotMatch": driver.Value("STRING", "test2")})
    assert driver.resolve_pod_spec_param("not-pipeline-channel", {}) == "not-pipeline-channel"
    number = {"pipelinechannel--n": driver.Value("NUMBER_INTEGER", 8)}
    assert driver.resolve_pod_spec_param("{{$.inputs.parameters['pipelinechannel--n']}}", number) == ""
    container = {"resources": {"accelerator": {"resourceType": "nvidia.com/gpu",
                                               "resourceCount": "{{$.inputs.parameters['pipelinechannel--n']}}"}}}
    assert driver.pod_resources(container, number) == {"limits": {}, "requests": {}}
    with pytest.raises(driver.DriverError):
        driver.pod_resources({"resources": {"resourceCpuLimit": "{{$.inputs.parameters['pipelinechannel--n']}}"}}, number)


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_every_gpu_executor_gets_a_gpu_limit_by_default(name):
    """With the packages' default parameters, every GPU executor's pod gets ``limits[<gpu type>]``."""
    spec = _package(name)
    params = spec["root"]["inputDefinitions"]["parameters"]
    got = {ex: r for ex, r in _resources(spec).items() if any("gpu" in k for k in r["limits"])}
    assert set(got) == set(GPU_EXECUTORS[name]), got
    gpu_type = params[GPU_TYPE[name]]["defaultValue"]
    for executor, count_param in GPU_EXECUTORS[name].items():
        assert got[executor]["limits"][gpu_type] == str(params[count_param]["defaultValue"]), executor


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_gpu_limits_follow_the_run_parameters(name):
    spec = _package(name)
    given = {param: str(n + 2) for n, param in enumerate(dict.fromkeys(GPU_EXECUTORS[name].values()))}
    given[GPU_TYPE[name]] = "amd.com/gpu"
    got = _resources(spec, given)
    for executor, param in GPU_EXECUTORS[name].items():
        gpus = {k: v for k, v in got[executor]["limits"].items() if k not in ("cpu", "memory")}
        assert gpus == {"amd.com/gpu": given[param]}, executor


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_every_runtime_resource_field_is_a_string_parameter_or_a_constant(name):
    """Each channel a resource field names must reach the executor as a STRING (root parameter of
    type STRING through every enclosing DAG); constants must already be quantities."""
    spec = _package(name)
    executors = spec["deploymentSpec"]["executors"]
    checked = 0
    for task in driver.executor_tasks(spec):
        resources = executors[task.executor]["container"].get("resources") or {}
        fields = {k: v for k, v in resources.items() if k in driver.RESOURCE_FIELDS}
        fields.update({f"accelerator.{k}": v for k, v in (resources.get("accelerator") or {}).items()})
        for field, text in fields.items():
            channel = driver.channel_name(str(text))
            if channel is None:
                if field != "accelerator.resourceType":
                    driver.parse_quantity(str(text), f"{task.executor} {field}")
                continue
            value = task.params.get(channel)
            assert value is not None, f"{task.executor}.{field}: {channel} is not among the task's inputs"
            assert value.kind == "STRING", f"{task.executor}.{field}: {channel} is {value.kind}; the driver reads \"\""
            root = driver.root_parameter_of(spec, channel)
            assert root and spec["root"]["inputDefinitions"]["parameters"][root]["parameterType"] == "STRING"
            checked += 1
    assert checked >= 2 * len(GPU_EXECUTORS[name])


@pytest.mark.parametrize("text, count", [("8", 8), (" 0 ", 0), (2, 2)])
def test_gpu_count_converts_the_string_parameter(text, count):
    assert bodies.gpu_count(text, "p2_sft_gpus") == count


@pytest.mark.parametrize("text", ["", "eight", "1.5", "-1", "²"])
def test_bad_gpu_counts_fail_in_preflight_naming_the_parameter(text):
    with pytest.raises(StageError, match="p3_rl_gpus_per_worker"):
        bodies.preflight(gpu_counts={"p2_sft_gpus": "8", "p3_rl_gpus_per_worker": text})
