"""Provenance is true: rl_config.json names the model and data a run used, not the seed's
``Mini-o3/Mini-o3-7B-SFT`` and VisualProbe file lists; dead judge-failure switches are refused."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from mini_o3.cli import app
from mini_o3.data.synthetic import SynthConfig, generate
from mini_o3.rl.config import RLConfig, RLJudgeConfig


def test_with_inputs_records_what_the_run_reads():
    config = RLConfig().with_inputs("/models/sft", ["/data/a/train.parquet"], [])
    assert config.model_path == "/models/sft" and config.train_files == ["/data/a/train.parquet"]
    assert config.val_files == [] and config.data_root is None
    with pytest.raises(ValueError, match="model_path='other' is not read"):
        RLConfig(model_path="other").with_inputs("/models/sft", ["t"], [])
    assert RLConfig(model_path="/models/sft").with_inputs("/models/sft", ["t"], []).model_path == "/models/sft"


def test_unimplemented_judge_failure_switches_are_refused():
    for name in ("failure_drops_group_in_training", "failure_scores_zero_in_validation"):
        with pytest.raises(ValidationError, match=f"judge.{name}=false is not implemented"):
            RLJudgeConfig(**{name: False})


def test_verl_rl_config_json_names_the_model_and_data_used(tmp_path):
    synth = tmp_path / "syn"
    generate(SynthConfig(width_range=(256, 256), height_range=(256, 256)), synth, 2, 1, seed=0, progress=False)
    result = CliRunner().invoke(app, [
        "rl", "--engine", "verl", "--model", "org/my-sft-model", "--train", str(synth), "--val", str(synth),
        "--out", str(tmp_path / "run"), "--nnodes", "1", "--gpus-per-node", "4", "--set", "train_batch_size=2",
        "--set", "ppo_mini_batch_size=2", "--set", "rollout_n=4", "--dry-run"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "run" / "verl" / "rl_config.json").read_text())
    assert recorded["model_path"] == "org/my-sft-model"
    assert recorded["train_files"] == [str(synth.resolve())] and recorded["val_files"] == [str(synth.resolve())]
    assert not any("VisualProbe" in f for f in recorded["train_files"] + recorded["val_files"])


def test_local_engine_refuses_an_unread_model_path_before_loading(tmp_path):
    from mini_o3.rl.local import run_rl_local

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # never loaded: the check comes first
    with pytest.raises(ValueError, match="model_path='Qwen/other' is not read"):
        run_rl_local(model, [tmp_path / "train"], [], tmp_path / "out", overrides=["model_path=Qwen/other"],
                     progress=False)
