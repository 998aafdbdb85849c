"""The whole ``mini-o3-train`` pipeline under kfp.local (SubprocessRunner, no venv) at the smallest
tiny scale: real LLaMA-Factory SFT, the reference RL engine, local Avg@k and the report; then a
second run that skips data and SFT by URI, and a third whose RL stage fails (MLflow parent FAILED)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from rich.console import Console

pytest.importorskip("llamafactory")

from mini_o3 import storage
from mini_o3.kfp.local_run import (
    TINY_EVAL,
    TINY_RL,
    EmbeddedConfig,
    run_embedded,
    run_local,
)
from mini_o3.kfp.pipelines import build_evaluate

pytestmark = pytest.mark.slow

STAGES = ["prepare_coldstart", "prepare_rl_data", "prepare_eval_data", "sft", "rl", "evaluate", "register", "report"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    saved = dict(os.environ)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path_factory.mktemp("embedded")
    config = EmbeddedConfig(out=out, profile="smoke", n_train=4, n_test=2, eval_k=1)
    try:
        first = run_embedded(config)
        given = {
            "p1_data_coldstart_uri": first.stages["prepare_coldstart"].out_uri,
            "p1_data_rl_uri": first.stages["prepare_rl_data"].out_uri,
            "p1_data_eval_uri": first.stages["prepare_eval_data"].out_uri,
            "p2_sft_model_uri": first.stages["sft"].model_uri,
        }
        second = run_embedded(config, {**given, "p4_eval_compare": True})  # + base and SFT evaluations
        with pytest.raises(RuntimeError, match="rl"):
            run_embedded(config, {**given, "p3_rl_overrides": [*TINY_RL, "rollout_n=0"]})
        platform = {"MLFLOW_TRACKING_URI": (out / "mlruns").as_uri()}  # what the chart's ConfigMap gives a cluster
        evaluate = {"storage_root": str(out / "eval-artifacts"),
                    "model_uri": second.stages["rl"].model_uri, "benchmarks": "synthetic", "k": 2,
                    "synthetic": ["n_train=2", "n_test=2", "config.width_range=[512,640]",
                                  "config.height_range=[512,640]"],
                    "backend": "local", "eval_overrides": TINY_EVAL}
        run_local(build_evaluate(), evaluate, out, Console(stderr=True), platform=platform)
        half = out / "half-model"
        half.mkdir()
        (half / "config.json").write_text("{}")
        with pytest.raises(RuntimeError, match="resolve-model"):
            run_local(build_evaluate(), {**evaluate, "model_uri": str(half)}, out, Console(stderr=True), platform=platform)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"out": out, "first": first, "second": second, "given": given, "evaluate": evaluate}


def _mlflow(out: Path, experiment: str = "mini-o3-embedded"):
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], max_results=100)


def _kfp_dir(out: Path, run_root: Path) -> Path:
    """The kfp.local pipeline folder of the run whose storage root is ``run_root``."""
    for pipeline_dir in (out / "kfp").iterdir():
        init = pipeline_dir / "init-run" / "executor_output.json"
        if init.is_file() and json.loads(init.read_text())["parameterValues"]["run_root"] == str(run_root):
            return pipeline_dir
    raise AssertionError(f"no kfp.local run wrote {run_root}")


def _tasks(out: Path, run_root: Path) -> set[str]:
    return {p.name for p in _kfp_dir(out, run_root).iterdir() if p.is_dir()}


def test_first_run_reports_and_seals_every_stage(runs):
    first = runs["first"]
    assert list(first.stages) == STAGES
    report = first.report_md.read_text()
    assert report.startswith("# Mini-o3 training run") and "Avg@1" in report and "SFT | step 2" in report
    html = first.report_html.read_text()
    assert html.count("data:image/png;base64,") >= 3 and "<table>" in html
    for name, result in first.stages.items():
        for uri in result.outputs.values():
            assert storage.is_complete(uri), (name, uri)
            storage.get_dir(uri)  # every file matches its manifest
    metrics = first.stages["evaluate"].metrics
    assert set(metrics) == {"avg_at_k/synthetic", "se/synthetic", "maj_at_k/synthetic"}
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 and math.isfinite(v) for v in metrics.values())
    assert first.stages["report"].metrics == metrics
    assert first.stages["sft"].metrics["global_step"] == 2.0
    # the KFP artifacts: Metrics of the evaluate task, Markdown / HTML of the report task
    kfp_dir = _kfp_dir(runs["out"], first.run_root)
    executor = json.loads((kfp_dir / "evaluate" / "executor_output.json").read_text())
    assert executor["artifacts"]["metrics"]["artifacts"][0]["metadata"] == pytest.approx(metrics)
    assert (kfp_dir / "report" / "markdown").read_text() == report
    assert (kfp_dir / "report" / "html").read_text() == html


def test_mlflow_parent_has_one_child_per_stage(runs):
    _, all_runs = _mlflow(runs["out"])
    first = runs["first"]
    kfp_run_id = first.run_root.name
    parents = [r for r in all_runs if r.data.tags.get("kfp.run_id") == kfp_run_id and r.data.tags.get("mini_o3.run_kind") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["mini_o3.stage"] for r in children) == sorted(STAGES)
    assert all(r.info.status == "FINISHED" for r in children)
    evaluate = next(r for r in children if r.data.tags["mini_o3.stage"] == "evaluate")
    assert "avg_at_k/synthetic" in evaluate.data.metrics
    assert not any("secret" in key.lower() for r in [*parents, *children] for key in r.data.params)


def test_skip_uris_skip_their_stages(runs):
    first, second = runs["first"], runs["second"]
    tasks = _tasks(runs["out"], second.run_root)
    assert not {"sft", "sft-2", "prepare-coldstart", "prepare-bench", "prepare-bench-2"} & tasks, tasks
    assert {"use-artifact", "rl", "evaluate", "report-2"} <= tasks  # report-2: the learning-table report
    assert list(second.stages) == ["rl", "evaluate", "register", "report"]
    rl_run = json.loads((second.run_root / "rl" / "run" / "stage.json").read_text())
    assert rl_run["outputs"]["model"] == str(second.run_root / "rl" / "model")
    report = second.report_md.read_text()
    assert f"`{runs['given']['p2_sft_model_uri']}`" in report  # the given SFT model, with its run's loss
    assert "SFT | step 2" in report
    assert first.run_root != second.run_root


def test_failed_stage_closes_the_parent_failed(runs):
    _, all_runs = _mlflow(runs["out"])
    parents = [r for r in all_runs if r.data.tags.get("mini_o3.run_kind") == "pipeline"]
    train = [r for r in parents if r.data.tags["kfp.pipeline"] == "mini-o3-train"]
    assert sorted(r.info.status for r in train) == ["FAILED", "FINISHED", "FINISHED"]
    failed = next(r for r in train if r.info.status == "FAILED")
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == failed.info.run_id]
    assert [r.data.tags["mini_o3.stage"] for r in children] == []  # RL refused its overrides before starting


def test_evaluate_pipeline_reports_the_given_model(runs):
    _, all_runs = _mlflow(runs["out"], "mini-o3-eval")
    evaluate = runs["evaluate"]
    (ok_root,) = [p for p in Path(evaluate["storage_root"]).iterdir() if (p / "report").is_dir()]
    report = (ok_root / "report" / "report.md").read_text()
    assert report.startswith("# Mini-o3 evaluation") and f"| model | `{evaluate['model_uri']}` |" in report
    result = json.loads((ok_root / "eval" / "stage.json").read_text())
    assert result["info"]["k"] == {"synthetic": 2} and 0.0 <= result["metrics"]["avg_at_k/synthetic"] <= 1.0
    parents = {r.data.tags["kfp.run_id"]: r for r in all_runs
               if r.data.tags.get("kfp.pipeline") == "mini-o3-evaluate" and r.data.tags.get("mini_o3.run_kind") == "pipeline"}
    assert parents[ok_root.name].info.status == "FINISHED"
    stages = sorted(r.data.tags["mini_o3.stage"] for r in all_runs
                    if r.data.tags.get("mlflow.parentRunId") == parents[ok_root.name].info.run_id)
    assert stages == ["evaluate", "prepare_eval_data", "report"]
    # the half-written model was refused by the check task: no evaluation ran, the parent is FAILED
    (failed,) = [r for k, r in parents.items() if k != ok_root.name]
    assert failed.info.status == "FAILED"
    assert not (Path(evaluate["storage_root"]) / failed.data.tags["kfp.run_id"] / "eval").exists()


def test_compare_run_opens_its_report_with_the_learning_table(runs):
    """p4_eval_compare evaluates the base and SFT models on the same questions as the RL model; the
    report answers "did it learn?" first and report.json carries the same under ``learning``."""
    second = runs["second"]
    markdown = second.report_md.read_text()
    assert markdown.index("## Did it learn?") < markdown.index("| Item | Value |")
    learning = json.loads((second.report_md.parent / "report.json").read_text())["learning"]
    assert set(learning["models"]) == {"base", "sft", "rl"}
    for model in learning["models"].values():
        assert 0 <= model["avg_at_k"] <= 1 and 0 <= model["valid_rate"] <= 1 and model["mean_turns"] >= 1
        assert len(model["ci95"]) == 2
    delta = learning["deltas"]["rl_minus_sft"]
    assert delta["questions"] == 2 and delta["ci95"][0] <= delta["mean"] <= delta["ci95"][1]
    assert 0 <= learning["chance"] <= 1
    for name in ("eval_base", "eval_sft", "eval"):
        assert (second.run_root / name / "report.json").is_file()
    assert (second.run_root / "report" / "learning.png").is_file() or "learning.png" in (
        second.report_html.read_text())
