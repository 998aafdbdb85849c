"""Explicit promotion on a local MLflow store: the champion alias moves to the candidate only when
it is better on every benchmark with a paired 95% CI excluding 0, the reason lands in the version's
tags either way; ``mini-o3 promote`` says so in one line and exits 1 when nothing moved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.eval_history import QUESTIONS, bench_collection, evaluated, model, sealed, store_fixture  # noqa: F401 (registers `store`)
from typer.testing import CliRunner

from mini_o3 import registry
from mini_o3.cli import app
from mini_o3.registry import RegistryError
from mini_o3.stages.promote import promote


def _three_versions(uri: str, tmp_path: Path) -> None:
    for v in ("1", "2", "3"):
        source = sealed(tmp_path / "models" / v, {"config.json": b"{}", "w": v.encode()})
        registry.register_version(tracking_uri=uri, name="mini-o3", source_uri=source)


@pytest.mark.slow
def test_promote_moves_the_alias_only_when_every_benchmark_is_better(store, tmp_path):
    bench = bench_collection(tmp_path / "bench")
    _three_versions(store, tmp_path)  # candidate → v3
    registry.set_alias(store, "mini-o3", "champion", "1")
    evaluated(store, tmp_path, "run-1", model("1", "a" * 16), {q: float(i % 2) for i, q in enumerate(QUESTIONS)}, bench)
    evaluated(store, tmp_path, "run-3", model("3", "c" * 16), {q: float(i % 2) for i, q in enumerate(QUESTIONS)}, bench)
    refused = promote(tracking_uri=store, model="mini-o3")
    assert not refused.promoted and "not better on synthetic" in refused.reason
    assert registry.alias_version(store, "mini-o3", "champion") == "1"
    tags = registry.get_version(store, "mini-o3", version="3").tags
    assert tags["mini_o3.promotion.champion"] == "refused" and tags["mini_o3.promotion.champion.against"] == "1"
    assert "not better on synthetic" in tags["mini_o3.promotion.champion.reason"]
    evaluated(store, tmp_path, "run-4", model("3", "c" * 16), dict.fromkeys(QUESTIONS, 1.0), bench)
    dry = promote(tracking_uri=store, model="mini-o3", dry_run=True)
    assert dry.promoted and registry.alias_version(store, "mini-o3", "champion") == "1"
    done = promote(tracking_uri=store, model="mini-o3")
    assert done.promoted and "better on every benchmark" in done.reason and "run run-4 vs run run-1" in done.reason
    assert registry.alias_version(store, "mini-o3", "champion") == "3"
    tags = registry.get_version(store, "mini-o3", version="3").tags
    assert tags["mini_o3.promotion.champion"] == "promoted"
    assert json.loads(tags["mini_o3.promotion.champion.deltas"])["synthetic"]["verdict"] == "improvement"
    assert promote(tracking_uri=store, model="mini-o3").reason == "version 3 already holds @champion"


def test_promote_refuses_without_comparable_evaluations(store, tmp_path):
    _three_versions(store, tmp_path)
    first = promote(tracking_uri=store, model="mini-o3")  # no champion yet: the candidate becomes it
    assert first.promoted and first.reason == "no version held @champion"
    registry.set_alias(store, "mini-o3", "candidate", "2")
    nothing = promote(tracking_uri=store, model="mini-o3")
    assert not nothing.promoted and "candidate v2 has no finished evaluation" in nothing.reason
    bench = bench_collection(tmp_path / "bench")
    evaluated(store, tmp_path, "run-2", model("2", "b" * 16), dict.fromkeys(QUESTIONS, 1.0), bench)
    other = promote(tracking_uri=store, model="mini-o3")
    assert not other.promoted and "champion v3 has no finished evaluation on the candidate's benchmarks" in other.reason
    with pytest.raises(RegistryError, match="models:/mini-o3@nope does not resolve"):
        promote(tracking_uri=store, model="mini-o3", from_alias="nope")
    with pytest.raises(RegistryError, match="--to 'latest' is not a valid MLflow alias"):
        promote(tracking_uri=store, model="mini-o3", to_alias="latest")


@pytest.mark.slow
def test_promote_command_says_what_it_did_and_exits_by_the_outcome(store, tmp_path, monkeypatch):
    bench = bench_collection(tmp_path / "bench")
    _three_versions(store, tmp_path)
    registry.set_alias(store, "mini-o3", "champion", "1")
    evaluated(store, tmp_path, "run-1", model("1", "a" * 16), dict.fromkeys(QUESTIONS, 1.0), bench)
    evaluated(store, tmp_path, "run-3", model("3", "c" * 16), dict.fromkeys(QUESTIONS, 0.0), bench)
    runner = CliRunner()
    refused = runner.invoke(app, ["promote", "--model", "mini-o3", "--from", "candidate", "--to", "champion",
                                  "--tracking-uri", store])
    assert refused.exit_code == 1
    assert refused.stdout.startswith("mini-o3 v3 (@candidate) not promoted to @champion: not better on synthetic")
    evaluated(store, tmp_path, "run-4", model("3", "c" * 16), dict.fromkeys(QUESTIONS, 1.0), bench)
    registry.set_alias(store, "mini-o3", "champion", "2")
    evaluated(store, tmp_path, "run-2", model("2", "b" * 16), dict.fromkeys(QUESTIONS, 0.0), bench)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    done = runner.invoke(app, ["promote", "--model", "mini-o3"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("mini-o3 v3 (@candidate) promoted to @champion (was v2): better on every benchmark")
    assert registry.alias_version(store, "mini-o3", "champion") == "3"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    missing = runner.invoke(app, ["promote", "--model", "mini-o3"], env={"COLUMNS": "200"})
    assert missing.exit_code == 2 and "--tracking-uri is not given and MLFLOW_TRACKING_URI is not set" in missing.output
    bad = runner.invoke(app, ["promote", "--model", "nope", "--tracking-uri", store], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "models:/nope@candidate does not resolve in the registry" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
