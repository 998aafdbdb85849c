"""Secret names the KFP 2.17.0 driver resolves for our compiled packages (requirement: optional
Secrets never pass an empty name).

Upstream rule (kubeflow/pipelines tag 2.17.0, commit 4a3592cb2dd0a91a4652ab93893ec8beda1f3158):
``backend/src/v2/driver/k8s.go:347-377`` resolves a ``secretAsEnv.secretNameParameter`` with
``resolveInputParameterStr`` (``backend/src/v2/driver/resolve.go:499-523``), which fails on anything
but a non-empty string ("failed to resolve secret name") before ``optional`` is read; the value
comes from the parent DAG's parameters (``backend/src/v2/driver/container.go:140-155,277``).
Re-stated in ``fixtures/kfp_driver.py``. Our design: Secret names are never empty (defaults = the
chart's names), the judge is switched off by a boolean, and ``init-run`` — which mounts only the S3
Secret and runs before every task that mounts the others — refuses an empty name.
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
JUDGE_OFF = {"train": {"p0_judge_enabled": False}, "evaluate": {"judge_enabled": False}}
JUDGE_SECRET = {"train": "p0_judge_secret_name", "evaluate": "judge_secret_name"}


def _package(name: str) -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all((REPO / "pipelines" / f"{name}.yaml").read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _mounted(name: str, given: dict) -> dict[str, list]:
    """task → the Secret names the driver mounts on it under ``given``; DriverError when it would fail."""
    spec, platform = _package(name)
    return {t.task: driver.secret_names(platform.get(t.executor, {}), t.dag_params)
            for t in driver.executor_tasks(spec, given)}


@pytest.mark.parametrize("name", ["train", "evaluate"])
@pytest.mark.parametrize("judge", ["on", "off"])
def test_every_secret_name_resolves_with_the_judge_on_and_off(name, judge):
    """Default run and the documented rule-scoring run: the driver resolves every mount."""
    mounted = _mounted(name, JUDGE_OFF[name] if judge == "off" else {})
    judged = {task for task, names in mounted.items() if "mini-o3-judge" in names}
    assert judged and all(names for names in mounted.values())


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_an_empty_judge_secret_name_is_what_the_driver_refuses(name):
    with pytest.raises(driver.DriverError, match="failed to resolve secret name"):
        _mounted(name, {JUDGE_SECRET[name]: ""})


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_init_run_checks_every_secret_name_parameter(name):
    """Each root parameter a ``secretNameParameter`` carries reaches init-run's ``secret_names``."""
    spec, platform = _package(name)
    named = {driver.root_parameter_of(spec, entry["secretNameParameter"]["componentInputParameter"])
             for config in platform.values() for entry in config.get("secretAsEnv", [])}
    init = spec["root"]["dag"]["tasks"]["init-run"]["inputs"]["parameters"]["secret_names"]["runtimeValue"]["constant"]
    assert named and None not in named
    assert named == set(init), f"init-run does not check {sorted(named - set(init))}"
    for key, text in init.items():
        assert driver.channel_name(text) == f"pipelinechannel--{key}"


@pytest.mark.parametrize("name", ["train", "evaluate"])
@pytest.mark.parametrize("which", ["s3", "judge", "hf_token"])
def test_init_run_refuses_an_empty_secret_name_with_the_inputs_the_driver_gives_it(name, which):
    spec, _ = _package(name)
    param = next(p for p in spec["root"]["inputDefinitions"]["parameters"] if p.endswith(f"{which}_secret_name"))
    (init,) = [t for t in driver.executor_tasks(spec, {param: ""}) if t.task == "init-run"]
    with pytest.raises(StageError, match=f"^{param} is empty: KFP refuses an empty Secret name"):
        bodies.preflight(secret_names=init.params["secret_names"].value, gpu_counts=init.params["gpu_counts"].value)
    (init,) = [t for t in driver.executor_tasks(spec, JUDGE_OFF[name]) if t.task == "init-run"]
    bodies.preflight(secret_names=init.params["secret_names"].value, gpu_counts=init.params["gpu_counts"].value)


def test_secret_names_must_be_dns_subdomains():
    with pytest.raises(StageError, match="p0_judge_secret_name='Judge_Key' is not a Secret name"):
        bodies.preflight(secret_names={"p0_judge_secret_name": "Judge_Key"})
    with pytest.raises(StageError, match="judge_enabled parameter to false"):
        bodies.preflight(secret_names={"judge_secret_name": ""})


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_the_judge_switch_reaches_every_task_that_mounts_the_judge(name):
    spec, platform = _package(name)
    switch = next(iter(JUDGE_OFF[name]))
    assert spec["root"]["inputDefinitions"]["parameters"][switch]["parameterType"] == "BOOLEAN"
    for task in driver.executor_tasks(spec, JUDGE_OFF[name]):
        if "mini-o3-judge" in driver.secret_names(platform.get(task.executor, {}), task.dag_params):
            assert task.params["judge_enabled"] == driver.Value("BOOLEAN", False), task.task


@pytest.mark.parametrize("enabled, env, judged", [(False, {"OPENAI_API_KEY": "k"}, False), (True, {}, False),
                                                  (True, {"OPENAI_API_KEY": "k"}, True)])
def test_evaluate_asks_for_rule_scoring_explicitly_without_the_judge(monkeypatch, tmp_path, enabled, env, judged):
    import mini_o3.stages

    for key in bodies.JUDGE_SECRET_KEYS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    calls = []
    monkeypatch.setattr(mini_o3.stages, "eval_stage", lambda request, **kw: calls.append(request))
    bodies.run_request(bodies.eval_request(model_uri="s3://b/m", bench_uri="s3://b/e", run_root=str(tmp_path), k=0,
                                           backend="local", overrides=["max_turns=2"], judge_enabled=enabled,
                                           judge_secret_name="mini-o3-judge", parent_run_id=""))
    (call,) = calls
    assert call.judge is judged
    assert call.overrides == (["max_turns=2"] if judged else [*bodies.rule_protocol_overrides(), "max_turns=2"])
