"""Scheduled evaluation that follows a model, under kfp.local with a local MLflow store (issue 16):
a train run registers a version (alias candidate); two scheduled-style evaluate runs on
``models:/mini-o3@candidate`` → the second is skipped as unchanged (no evaluation task); a new
version → evaluated, the trend shows two points, ``promote_if_better`` makes it champion; a served
endpoint whose answers drop between two runs → flagged as a regression (paired CI excludes 0)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.scripted_server import ScriptedItem, ScriptedServer

from mini_o3 import registry
from mini_o3.data.bench import read_records, sample_meta
from mini_o3.kfp.local_run import TINY_EVAL, EmbeddedConfig, run_embedded, run_local
from mini_o3.kfp.pipelines import build_evaluate
from mini_o3.stages import prepare_bench_stage

pytestmark = pytest.mark.slow
SYNTHETIC = ["n_train=2", "n_test=2", "config.width_range=[512,640]", "config.height_range=[512,640]"]


def _runs_under(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    saved = dict(os.environ)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path_factory.mktemp("scheduled")
    mlflow_uri = (out / "mlruns").as_uri()
    bench = prepare_bench_stage("synthetic", str(out / "bench" / "eval_data"), synthetic=SYNTHETIC, progress=False).out_uri
    console = Console(stderr=True)
    runs: dict[str, Path] = {}
    eval_root = out / "eval-artifacts"

    def evaluate(label: str, **params) -> None:
        before = _runs_under(eval_root)
        values = {"storage_root": str(eval_root), "model_uri": "models:/mini-o3@candidate",
                  "bench_uri": bench, "k": 1, "backend": "local", "eval_overrides": TINY_EVAL, "judge_enabled": False,
                  **params}
        run_local(build_evaluate(), values, out, console, platform={"MLFLOW_TRACKING_URI": mlflow_uri})
        (new,) = _runs_under(eval_root) - before
        runs[label] = eval_root / new

    try:
        # 1. a train run (SFT skipped: the tiny model is the SFT model) registers its RL model
        tiny = out / "tiny-model-smoke"  # built and sealed by run_embedded before the pipeline starts
        train = run_embedded(EmbeddedConfig(out=out, profile="smoke", eval_k=1), {
            "p1_data_coldstart_uri": bench, "p1_data_rl_uri": bench, "p1_data_eval_uri": bench,
            "p2_sft_model_uri": str(tiny)})
        # 2. scheduled runs on the alias: evaluated, then unchanged
        evaluate("first")
        evaluate("unchanged")
        # 3. a new version under the alias: evaluated; promote_if_better with no champion yet
        v2 = registry.register_version(tracking_uri=mlflow_uri, name="mini-o3", source_uri=str(tiny), alias="candidate")
        evaluate("new_version", promote_if_better=True)
        # 4. a served endpoint that drifts: right answers, then wrong ones
        items = [ScriptedItem(r.problem.replace("<image>\n", "", 1), r.answer, tuple(sample_meta(r).target_bbox_rel))
                 for r in read_records(Path(bench) / "synthetic" / "val.parquet")]
        with ScriptedServer(items={i.question: i for i in items}, lifetime_s=1800).start() as server:
            endpoint = {"model_uri": "", "backend": f"openai:{server.base_url}#no_zoom",
                        "eval_overrides": ["max_turns=2", "min_pixels=3136", "max_pixels=60000"]}
            evaluate("endpoint_good", **endpoint)
            server.items = {q: replace(i, solution=i.wrong) for q, i in server.items.items()}
            evaluate("endpoint_drop", **endpoint)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"out": out, "mlflow_uri": mlflow_uri, "train": train, "runs": runs, "v2": v2, "bench": bench}


def _report(run_root: Path) -> tuple[str, dict]:
    return (run_root / "report" / "report.md").read_text(), json.loads((run_root / "report" / "report.json").read_text())


def _kfp_tasks(out: Path, run_root: Path) -> set[str]:
    for pipeline_dir in (out / "kfp").iterdir():
        init = pipeline_dir / "init-run" / "executor_output.json"
        if init.is_file() and json.loads(init.read_text())["parameterValues"]["run_root"] == str(run_root):
            return {p.name for p in pipeline_dir.iterdir() if p.is_dir()}
    raise AssertionError(f"no kfp.local run wrote {run_root}")


def test_train_run_registers_a_candidate_version(scheduled):
    registered = scheduled["train"].stages["register"]
    (version,) = [registered.info["versions"]["rl"]]
    assert version["ref"] == "models:/mini-o3/1" and version["alias"] == "candidate"
    found = registry.get_version(scheduled["mlflow_uri"], "mini-o3", version="1")
    assert found.source == str(scheduled["train"].run_root / "rl" / "model")
    tags = found.tags
    assert tags["mini_o3.kfp_run_id"] == scheduled["train"].run_root.name
    assert tags["mini_o3.digest"] == registry.artifact_digest(found.source)
    assert tags["mini_o3.data.rl"] and tags["mini_o3.data.eval"] and len(tags["mini_o3.config.rl"]) == 16
    assert tags["mini_o3.train_eval_uri"] == str(scheduled["train"].run_root / "eval")


def test_scheduled_run_resolves_the_alias_and_records_it(scheduled):
    markdown, report = _report(scheduled["runs"]["first"])
    model = report["model"]
    assert model["ref"] == "models:/mini-o3@candidate" and model["version"] == "1"
    assert model["uri"] == str(scheduled["train"].run_root / "rl" / "model")
    assert model["digest"] == registry.artifact_digest(model["uri"])
    assert "`models:/mini-o3@candidate` → mini-o3 version 1" in markdown and model["digest"] in markdown


def test_second_unchanged_run_reuses_the_first_and_starts_no_evaluation(scheduled):
    first, unchanged = scheduled["runs"]["first"], scheduled["runs"]["unchanged"]
    assert "evaluate" in _kfp_tasks(scheduled["out"], first)
    tasks = _kfp_tasks(scheduled["out"], unchanged)
    assert not any(t.startswith("evaluate") for t in tasks), tasks  # no evaluation task, so no GPU pod
    assert not (unchanged / "eval").exists()
    markdown, report = _report(unchanged)
    assert f"Unchanged since run {first.name}" in markdown
    assert report["history"]["unchanged_since"] == first.name
    assert report["benchmarks"] == _report(first)[1]["benchmarks"]


def test_new_version_is_evaluated_and_the_trend_has_two_points(scheduled):
    root = scheduled["runs"]["new_version"]
    assert (root / "eval" / "report.json").is_file()
    markdown, report = _report(root)
    history = report["history"]
    assert report["model"]["version"] == "2"
    assert [r["version"] for r in history["runs"]] == ["2", "1"]  # newest first; the unchanged run adds none
    assert [r["run"] for r in history["runs"]] == [root.name, scheduled["runs"]["first"].name]
    assert "avg_at_k/synthetic" in history["runs"][0]["metrics"] and "ci95_low/synthetic" in history["runs"][0]["metrics"]
    previous = history["comparisons"]["previous run"]
    assert previous["version"] == "1" and previous["deltas"]["synthetic"]["questions"] == 2
    assert (root / "report" / "trend.png").is_file() and "## Trend of mini-o3" in markdown


def test_promote_if_better_with_no_champion_promotes_and_tags_why(scheduled):
    _, report = _report(scheduled["runs"]["new_version"])
    assert report["history"]["promotion"]["promoted"] is True
    assert registry.alias_version(scheduled["mlflow_uri"], "mini-o3", "champion") == "2"
    tags = registry.get_version(scheduled["mlflow_uri"], "mini-o3", version="2").tags
    assert tags["mini_o3.promotion.champion"] == "promoted"
    assert tags["mini_o3.promotion.champion.reason"] == "no version held @champion"


def test_endpoint_drop_is_flagged_as_a_regression(scheduled):
    good, drop = scheduled["runs"]["endpoint_good"], scheduled["runs"]["endpoint_drop"]
    assert (drop / "eval" / "report.json").is_file()  # an endpoint is evaluated every time
    _, good_report = _report(good)
    assert good_report["benchmarks"]["synthetic"]["overall"]["avg_at_k"] == 1.0
    markdown, report = _report(drop)
    assert report["history"]["target"].startswith("endpoint http://127.0.0.1:")
    delta = report["history"]["comparisons"]["previous run"]["deltas"]["synthetic"]
    assert delta["mean"] == -1.0 and delta["excludes_zero"] and delta["verdict"] == "regression"
    assert report["history"]["flags"]["regression"] == ["previous run/synthetic"]
    assert "**REGRESSION**" in markdown


def test_every_evaluation_is_one_history_run_with_stable_metric_keys(scheduled):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=scheduled["mlflow_uri"])
    experiment = client.get_experiment_by_name("mini-o3-history/mini-o3")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["mini_o3.model.version"] for r in runs) == ["1", "2"]
    for run in runs:
        assert {"avg_at_k/synthetic", "ci95_low/synthetic", "ci95_high/synthetic", "se/synthetic"} <= set(run.data.metrics)
        assert run.info.status == "FINISHED" and run.data.tags["mini_o3.eval_uri"].endswith("/eval")
