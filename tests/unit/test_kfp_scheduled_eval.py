"""The compiled packages wire scheduled evaluation: mini-o3-evaluate resolves its model first, plans
on a light CPU pod, and both evaluation tasks (CPU and GPU) sit under the plan's "nothing to reuse"
condition, so an unchanged run schedules no GPU pod; mini-o3-train registers the RL model after
its evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec, platform = yaml.safe_load_all((REPO / "pipelines" / f"{name}.yaml").read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec: dict, dag: dict | None = None, conditions: tuple[str, ...] = ()) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """task name → (task, the trigger conditions of every enclosing branch)."""
    out = {}
    for name, task in (dag or spec["root"]["dag"])["tasks"].items():
        cond = task.get("triggerPolicy", {}).get("condition")
        here = conditions + ((cond,) if cond else ())
        component = spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            out.update(_tasks(spec, component["dag"], here))
        else:
            out[name] = (task, here)
    return out


@pytest.fixture(scope="module")
def evaluate():
    return _load("evaluate")


def test_every_evaluation_task_waits_for_a_plan_with_nothing_to_reuse(evaluate):
    spec, executors = evaluate
    tasks = _tasks(spec)
    evals = {n: t for n, t in tasks.items() if t[0]["componentRef"]["name"].startswith("comp-evaluate")}
    assert sorted(evals) == ["evaluate", "evaluate-2"]
    for name, (task, conditions) in evals.items():
        assert "!(inputs.parameter_values['pipelinechannel--plan-eval-reuse_eval_uri'] != '')" in conditions[-1], name
    gpu = [n for n, (t, _) in evals.items() if "accelerator" in str(spec["deploymentSpec"]["executors"][
        spec["components"][t["componentRef"]["name"]]["executorLabel"]].get("container", {}).get("resources", {}))]
    assert gpu == ["evaluate-2"]
    reuse, conditions = tasks["use-artifact-2"]
    assert conditions == ("inputs.parameter_values['pipelinechannel--plan-eval-reuse_eval_uri'] != ''",)


def test_plan_runs_light_after_the_model_and_benchmarks_and_feeds_the_report(evaluate):
    spec, _ = evaluate
    tasks = _tasks(spec)
    plan, conditions = tasks["plan-eval"]
    assert conditions == ()
    inputs = plan["inputs"]["parameters"]
    assert inputs["model_info"]["taskOutputParameter"] == {"outputParameterKey": "model_info", "producerTask": "resolve-model"}
    assert {"force", "trend_runs", "judge_enabled"} <= set(inputs)
    resources = spec["deploymentSpec"]["executors"]["exec-plan-eval"]["container"]["resources"]
    assert "accelerator" not in resources and resources["memoryLimit"] == 4.294967296
    report = tasks["report"][0]["inputs"]["parameters"]
    assert report["history"]["taskOutputParameter"] == {"outputParameterKey": "history", "producerTask": "plan-eval"}
    assert report["promote_if_better"]["componentInputParameter"] == "pipelinechannel--promote_if_better"
    evaluate_task = tasks["evaluate"][0]["inputs"]["parameters"]
    assert evaluate_task["model"] == {"componentInputParameter": "pipelinechannel--resolve-model-model"}
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert (defaults["force"]["defaultValue"], defaults["promote_if_better"]["defaultValue"],
            defaults["trend_runs"]["defaultValue"]) == (False, False, 10)
    assert "models:/NAME@ALIAS" in defaults["model_uri"]["description"]


@pytest.mark.slow
def test_train_registers_the_rl_model_after_its_evaluation():
    spec, executors = _load("train")
    tasks = _tasks(spec)
    register, conditions = tasks["register-model"]
    inputs = register["inputs"]["parameters"]
    assert inputs["evaluation"]["taskOutputParameter"]["producerTask"].startswith("condition-branches")  # after eval
    assert inputs["name"]["componentInputParameter"] == "pipelinechannel--p5_register_model"
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert (defaults["p5_register_model"]["defaultValue"], defaults["p5_register_alias"]["defaultValue"],
            defaults["p5_register_sft"]["defaultValue"]) == ("mini-o3", "candidate", False)
    assert "exec-register-model" in executors  # S3 credentials mounted like every task


def test_embedded_run_summary_names_the_registered_version_and_the_mlflow_ui(tmp_path):
    from mini_o3.kfp.local_run import EmbeddedResult, _registered_lines
    from mini_o3.stages import StageResult

    uri = (tmp_path / "mlruns").as_uri()
    version = {"ref": "models:/mini-o3/3", "uri": str(tmp_path / "rl" / "model"), "digest": "ab" * 8, "name": "mini-o3",
               "version": "3", "alias": "candidate"}
    registered = StageResult("register", str(tmp_path / "registered"), info={"versions": {"rl": version}})
    result = EmbeddedResult(tmp_path, tmp_path, tmp_path / "r.md", tmp_path / "r.html", uri, 1.0, {"register": registered})
    text = _registered_lines(result)
    assert "registered[/green] mini-o3 version 3 (@candidate, models:/mini-o3/3" in text
    assert f"mlflow ui --backend-store-uri {uri} --registry-store-uri {uri}" in text
    assert _registered_lines(EmbeddedResult(tmp_path, tmp_path, tmp_path, tmp_path, uri, 1.0, {})) == ""
