"""mini_o3.tracking against a real local MLflow store (file store under the run folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow import MlflowClient
from pydantic import BaseModel

from mini_o3 import __version__, tracking
from mini_o3.tracking import redact

SECRET_WORDS = ["key", "token", "secret", "password", "passwd", "credential", "auth"]
_ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", max_size=8)


@pytest.fixture(autouse=True)
def _no_env_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@given(prefix=_ident, word=st.sampled_from(SECRET_WORDS), suffix=_ident, upper=st.booleans(),
       value=st.text(max_size=20))
def test_redact_drops_every_key_with_a_secret_word(prefix: str, word: str, suffix: str, upper: bool,
                                                   value: str) -> None:
    if word == "token" and suffix.startswith("s"):
        suffix = "_" + suffix  # "tokens" is a count (max_tokens), kept on purpose
    key = prefix + (word.upper() if upper else word) + suffix
    assert redact({key: value, "lr": 1e-6}) == {"lr": "1e-06"}
    assert redact({"judge": {key: value}}) == {}


@pytest.mark.slow
def test_redact_flattens_and_keeps_the_rest() -> None:
    class Judge(BaseModel):
        model: str = "gpt-4o"
        api_key: str = "sk-live-123"
        base_url: str = "https://user:hunter2@judge.example.com/v1"

    out = redact({"lr": 1e-6, "judge": Judge(), "launch": {"mode": "rayjob", "env": {"HF_TOKEN": "hf_abc"}},
                  "max_new_tokens": 8192, "val/avg@8": True, "turns": [6, 12], "long": "x" * 10_000})
    assert out == {"lr": "1e-06", "judge.model": "gpt-4o", "judge.base_url": "https://***@judge.example.com/v1",
                   "launch.mode": "rayjob", "max_new_tokens": "8192", "val/avg_at_8": "True",
                   "turns": "[6, 12]", "long": "x" * 6000}
    assert "sk-live-123" not in str(out) and "hunter2" not in str(out) and "hf_abc" not in str(out)


def test_resolve_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracking.resolve_tracking_uri(None, tmp_path) == (tmp_path.resolve() / "mlruns").as_uri()
    assert tracking.resolve_tracking_uri(None, None) is None
    for off in ("", "none", " None "):
        assert tracking.resolve_tracking_uri(off, tmp_path) is None
    assert tracking.resolve_tracking_uri("http://mlflow:5000", tmp_path) == "http://mlflow:5000"
    assert tracking.resolve_tracking_uri(str(tmp_path / "store"), None) == (tmp_path / "store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env-mlflow:5000")
    assert tracking.resolve_tracking_uri(None, tmp_path) == "http://env-mlflow:5000"
    assert tracking.resolve_tracking_uri("none", tmp_path) is None  # explicit wins over the env
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    assert tracking.resolve_tracking_uri(None, tmp_path) is None


def test_parent_and_stage_runs(tmp_path: Path) -> None:
    uri = tracking.resolve_tracking_uri(None, tmp_path)
    assert uri is not None
    kfp_id = "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
    parent = tracking.start_pipeline_run(experiment="mini-o3", kfp_run_id=kfp_id, pipeline="mini-o3-train",
                                         params={"model": "tiny", "s3_secret_name": "s3-creds",
                                                 "judge": {"api_key": "sk-1"}}, tracking_uri=uri)
    assert parent is not None
    report = tmp_path / "report"
    report.mkdir()
    (report / "summary.json").write_text('{"avg@8": 0.5}')
    (report / "plots").mkdir()
    (report / "plots" / "acc.png").write_bytes(b"\x89PNG")
    with tracking.stage_run(parent_run_id=parent, stage="eval", params={"k": 8, "token": "t"},
                            tracking_uri=uri) as tracker:
        tracker.log_metrics({"val/avg@8": 0.5, "loss": np.float32(0.25), "note": "text", "flag": True}, step=3)
        tracker.log_metrics({"loss": 0.125}, step=4)
        tracker.log_params({"benchmark": "vstar"})
        tracker.set_tags({"mini_o3.bench": "vstar"})
        tracker.log_artifact(report / "summary.json")
        tracker.log_artifacts(report, artifact_path="report")
        child_id = tracker.run_id
    tracking.finish_pipeline_run(parent, status="SUCCEEDED", tracking_uri=uri)

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("mini-o3")
    runs = {r.info.run_id: r for r in c.search_runs([exp.experiment_id], filter_string=f"tags.`kfp.run_id` = '{kfp_id}'")}
    assert set(runs) == {parent, child_id}
    p, ch = runs[parent], runs[child_id]
    assert p.info.run_name == "mini-o3-train-0f1e2d3c" and p.info.status == "FINISHED"
    assert p.data.tags["kfp.pipeline"] == "mini-o3-train" and p.data.tags["mini_o3.version"] == __version__
    assert p.data.params == {"model": "tiny"}  # s3_secret_name and judge.api_key dropped
    assert ch.info.run_name == "eval" and ch.info.status == "FINISHED"
    assert ch.data.tags["mlflow.parentRunId"] == parent and ch.data.tags["mini_o3.bench"] == "vstar"
    assert ch.data.params == {"k": "8", "benchmark": "vstar"}
    assert ch.data.metrics == {"val/avg_at_8": 0.5, "loss": 0.125}
    assert [(m.step, m.value) for m in c.get_metric_history(child_id, "loss")] == [(3, 0.25), (4, 0.125)]
    assert {a.path for a in c.list_artifacts(child_id)} == {"summary.json", "report"}
    assert {a.path for a in c.list_artifacts(child_id, "report")} == {"report/summary.json", "report/plots"}
    children = c.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert [r.info.run_id for r in children] == [child_id]


def test_parent_run_is_idempotent_per_kfp_run(tmp_path: Path) -> None:
    uri = tracking.default_tracking_uri(tmp_path)
    kw = {"experiment": "exp", "pipeline": "mini-o3-evaluate", "params": {"k": 1}, "tracking_uri": uri}
    first = tracking.start_pipeline_run(kfp_run_id="run-a", **kw)
    assert tracking.start_pipeline_run(kfp_run_id="run-a", **kw) == first  # a retried task
    with tracking.stage_run(parent_run_id=first, stage="eval", tracking_uri=uri):
        pass  # children carry kfp.run_id too: they must not be mistaken for the parent
    assert tracking.start_pipeline_run(kfp_run_id="run-a", **kw) == first
    assert tracking.start_pipeline_run(kfp_run_id="run-b", **kw) != first


def test_failure_marks_the_stage_failed(tmp_path: Path) -> None:
    uri = tracking.default_tracking_uri(tmp_path)
    parent = tracking.start_pipeline_run(experiment="exp", kfp_run_id="r1", pipeline="p", params={}, tracking_uri=uri)
    with pytest.raises(RuntimeError, match="boom"), \
            tracking.stage_run(parent_run_id=parent, stage="rl", tracking_uri=uri) as tracker:
        tracker.log_metrics({"step_loss": 1.0}, step=1)
        raise RuntimeError("boom")
    tracking.finish_pipeline_run(parent, status="FAILED", tracking_uri=uri)
    c = MlflowClient(tracking_uri=uri)
    child = c.get_run(tracker.run_id)
    assert child.info.status == "FAILED" and child.data.tags["mini_o3.error"] == "RuntimeError: boom"
    assert child.data.metrics == {"step_loss": 1.0}
    assert c.get_run(parent).info.status == "FAILED"
    with pytest.raises(ValueError, match="unknown status 'DONE'"):
        tracking.finish_pipeline_run(parent, status="DONE", tracking_uri=uri)


def test_tracking_off_is_a_no_op(tmp_path: Path) -> None:
    uri = tracking.resolve_tracking_uri("none", tmp_path)
    parent = tracking.start_pipeline_run(experiment="e", kfp_run_id="r", pipeline="p", params={"a": 1}, tracking_uri=uri)
    assert parent is None
    with tracking.stage_run(parent_run_id=parent, stage="sft", params={"a": 1}, tracking_uri=uri) as tracker:
        assert tracker.run_id is None
        tracker.log_params({"a": 1})
        tracker.log_metrics({"m": 1.0}, step=1)
        tracker.set_tags({"t": "v"})
        tracker.log_artifact(tmp_path / "missing.txt")
        tracker.log_artifacts(tmp_path)
    tracking.finish_pipeline_run(parent, tracking_uri=uri)
    assert not (tmp_path / "mlruns").exists()
