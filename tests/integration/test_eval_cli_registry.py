"""``mini-o3 eval --policy local:models:/NAME@ALIAS``: the CLI resolves the alias in the MLflow
Model Registry when it runs, evaluates that version's sealed model and records what it resolved."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from mini_o3 import registry, storage
from mini_o3.cli import app
from mini_o3.data.synthetic import SynthConfig, generate

pytestmark = pytest.mark.slow  # evaluates the tiny model through the CLI

TINY_EVAL = ["--set", "max_turns=1", "--set", "max_tokens_per_turn=8", "--set", "min_pixels=3136",
             "--set", "max_pixels=60000"]


def test_eval_follows_a_registered_alias(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = (tmp_path / "mlruns").as_uri()
    model = tmp_path / "run-1" / "rl" / "model"
    shutil.copytree(tiny_dir, model)
    storage.mark_complete(model)
    registry.register_version(tracking_uri=store, name="mini-o3", source_uri=str(model))
    bench = tmp_path / "synth"
    generate(SynthConfig(width_range=(512, 512), height_range=(512, 512)), bench, 0, 2, 0, progress=False)
    runner = CliRunner()
    done = runner.invoke(app, ["eval", "--policy", "local:models:/mini-o3@candidate", "--bench", str(bench), "--k", "1",
                               "--protocol", "rule", "--out", str(tmp_path / "out"), "--tracking-uri", store, *TINY_EVAL])
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"] == {"ref": "models:/mini-o3@candidate", "uri": str(model), "name": "mini-o3", "version": "1",
                               "alias": "candidate", "digest": registry.artifact_digest(str(model))}
    assert report["policy"].startswith(f"local:{model}@")
    assert "Model `models:/mini-o3@candidate` resolved to mini-o3 version 1" in (tmp_path / "out" / "report.md").read_text()
    missing = runner.invoke(app, ["eval", "--policy", "local:models:/mini-o3@champion", "--bench", str(bench),
                                  "--out", str(tmp_path / "out2"), "--tracking-uri", store], env={"COLUMNS": "300"})
    assert missing.exit_code == 2
    assert "error: --policy local:models:/mini-o3@champion: models:/mini-o3@champion does not resolve" in missing.output
