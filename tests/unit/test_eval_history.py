"""Scheduled-evaluation history on a local MLflow store: the unchanged check (model digest +
benchmark digests + eval-config hash), history runs with stable metric keys, paired comparisons
flagged only where the 95% CI excludes 0, and the trend section."""

from __future__ import annotations

from pathlib import Path

import pytest

from mini_o3 import registry
from mini_o3.evaluate.config import EvalConfig
from mini_o3.registry import ResolvedModel
from mini_o3.stages import history
from mini_o3.stages.history import (
    compare,
    flags,
    history_block,
    history_markdown,
    plan_eval,
)

from fixtures.eval_history import QUESTIONS, bench_collection, eval_dir, evaluated, model, sealed, store_fixture  # noqa: F401 (registers `store`)


def test_bench_digests_follow_content_and_ignore_the_collection_record(tmp_path):
    a = bench_collection(tmp_path / "run-a" / "eval_data")
    b = bench_collection(tmp_path / "run-b" / "eval_data")  # its stage.json names another run
    c = bench_collection(tmp_path / "run-c" / "eval_data", b"questions-v2")
    assert history.bench_digests(a) == history.bench_digests(b) != history.bench_digests(c)
    assert set(history.bench_digests(a)) == {"synthetic"}
    single = sealed(tmp_path / "single" / "vstar", {"val.parquet": b"v"})
    assert set(history.bench_digests(single)) == {"vstar"}


def test_unchanged_run_is_reused_unless_forced(store, tmp_path):
    bench = bench_collection(tmp_path / "bench")
    first = plan_eval(model=model(), backend="local", bench_uri=bench, config=EvalConfig(k=1), tracking_uri=store)
    assert first.reuse_eval_uri == "" and "no finished evaluation" in first.reason
    done = evaluated(store, tmp_path, "run-1", model(), dict.fromkeys(QUESTIONS, 1.0), bench)
    again = plan_eval(model=model(), backend="local", bench_uri=bench, config=EvalConfig(k=1), tracking_uri=store,
                      kfp_run_id="run-2")
    assert again.reuse_eval_uri == done.extra["eval_uri"] and again.reused_from == "run-1"
    assert again.reason == "unchanged since run run-1"
    forced = plan_eval(model=model(), backend="local", bench_uri=bench, config=EvalConfig(k=1), tracking_uri=store,
                       force=True)
    assert forced.reuse_eval_uri == "" and "evaluated anyway (force=true)" in forced.reason


@pytest.mark.parametrize("change", ["model", "benchmarks", "config", "backend-openai", "tracking-off", "hub"])
def test_any_change_or_an_endpoint_is_evaluated(store, tmp_path, change):
    bench = bench_collection(tmp_path / "bench")
    evaluated(store, tmp_path, "run-1", model(), dict.fromkeys(QUESTIONS, 1.0), bench)
    args = dict(model=model(), backend="local", bench_uri=bench, config=EvalConfig(k=1), tracking_uri=store)
    if change == "model":
        args["model"] = model(version="2", digest="e" * 16)
    elif change == "benchmarks":
        args["bench_uri"] = bench_collection(tmp_path / "bench2", b"other questions")
    elif change == "config":
        args["config"] = EvalConfig(k=2)  # more samples per question: other numbers
    elif change == "backend-openai":
        args["backend"] = "openai:http://127.0.0.1:9/v1#served"
    elif change == "tracking-off":
        args["tracking_uri"] = None
    else:
        args["model"] = ResolvedModel("hf://Mini-o3/Mini-o3-7B-v1", "hf://Mini-o3/Mini-o3-7B-v1", "")
    assert plan_eval(**args).reuse_eval_uri == ""


def test_targets_are_model_names_endpoints_or_uris():
    assert history.target_of(model(), "vllm") == "mini-o3"
    assert history.target_of(model(), "openai:http://user:pw@10.0.0.1:8000/v1#m") == "endpoint http://user:***@10.0.0.1:8000/v1#m"
    assert history.target_of(ResolvedModel("s3://b/run/rl/model", "s3://b/run/rl/model", "x"), "vllm") == "s3://b/run/rl/model"


def test_paired_comparison_flags_only_where_the_ci_excludes_zero(tmp_path):
    good = Path(eval_dir(tmp_path / "good", dict.fromkeys(QUESTIONS, 1.0)))
    bad = Path(eval_dir(tmp_path / "bad", dict.fromkeys(QUESTIONS, 0.0)))
    noisy = Path(eval_dir(tmp_path / "noisy", {q: float(i % 2) for i, q in enumerate(QUESTIONS)}))
    flipped = Path(eval_dir(tmp_path / "flipped", {q: float((i + 1) % 2) for i, q in enumerate(QUESTIONS[:2])}
                            | {q: float(i % 2) for i, q in enumerate(QUESTIONS) if i >= 2}))
    assert compare(bad, good)["synthetic"]["verdict"] == "regression"
    assert compare(good, bad)["synthetic"] | {"ci95": None} == {
        "mean": 1.0, "ci95": None, "questions": 12, "excludes_zero": True, "verdict": "improvement"}
    small = compare(flipped, noisy)["synthetic"]  # two questions changed, both ways: noise
    assert small["mean"] == 0.0 and not small["excludes_zero"] and small["verdict"] == "no significant change"
    other = Path(eval_dir(tmp_path / "other", dict.fromkeys(QUESTIONS, 1.0), bench="vstar"))
    assert compare(good, other, ["synthetic"])["synthetic"]["verdict"] == "no shared questions"


@pytest.mark.slow
def test_history_runs_trend_and_comparisons_with_previous_and_champion(store, tmp_path):
    bench = bench_collection(tmp_path / "bench")
    registry_model = tmp_path / "models"
    for v in ("1", "2", "3"):
        source = sealed(registry_model / v, {"config.json": b"{}", "w": v.encode()})
        registry.register_version(tracking_uri=store, name="mini-o3", source_uri=source)
    evaluated(store, tmp_path, "run-1", model("1", "a" * 16), dict.fromkeys(QUESTIONS, 1.0), bench)
    evaluated(store, tmp_path, "run-2", model("2", "b" * 16), dict.fromkeys(QUESTIONS, 1.0), bench)
    registry.set_alias(store, "mini-o3", "champion", "1")
    plan = evaluated(store, tmp_path, "run-3", model("3", "c" * 16), dict.fromkeys(QUESTIONS, 0.0), bench)
    block = history_block(plan, Path(plan.extra["eval_uri"]), plan.extra["run_id"], tmp_path / "work")
    assert [r["run"] for r in block["runs"]] == ["run-3", "run-2", "run-1"]
    assert set(block["runs"][0]["metrics"]) == {f"{k}/synthetic" for k in history.METRICS}
    assert block["comparisons"]["previous run"]["run"] == "run-2"
    assert block["comparisons"]["champion (v1)"]["version"] == "1"
    assert flags(block) == {"regression": ["previous run/synthetic", "champion (v1)/synthetic"], "improvement": []}
    markdown = "\n".join(history_markdown(block))
    assert "## Trend of mini-o3" in markdown and markdown.count("**REGRESSION**") == 2
    assert "| run-3 |" in markdown and "0.000 [0.000, 0.100]" in markdown
    assert history.write_trend_plot(block, tmp_path).is_file()
    mlflow_runs = history.history_runs(store, "mini-o3", max_results=10)
    assert {r.data.tags[history.TAG_MODEL_VERSION] for r in mlflow_runs} == {"1", "2", "3"}


def test_a_reused_run_compares_the_reused_evaluation_with_the_one_before(store, tmp_path):
    bench = bench_collection(tmp_path / "bench")
    evaluated(store, tmp_path, "run-1", model("1", "a" * 16), dict.fromkeys(QUESTIONS, 0.0), bench)
    evaluated(store, tmp_path, "run-2", model("2", "b" * 16), dict.fromkeys(QUESTIONS, 1.0), bench)
    plan = plan_eval(model=model("2", "b" * 16), backend="local", bench_uri=bench, config=EvalConfig(k=1),
                     tracking_uri=store, kfp_run_id="run-3")
    assert plan.reused_from == "run-2"
    block = history_block(plan, Path(plan.reuse_eval_uri), None, tmp_path / "work")
    assert block["unchanged_since"] == "run-2" and len(block["runs"]) == 2
    assert block["comparisons"]["previous run"]["run"] == "run-1"
    assert "**Unchanged since run run-2**" in "\n".join(history_markdown(block))
