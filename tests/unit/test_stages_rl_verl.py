"""The RL stage's view of a verl run: the newest checkpoint's merged HF folder is the policy it hands
on, and verl's file-logger metrics (written by verl's own FileLogger) become the stage's metrics.jsonl."""

from __future__ import annotations

import json

from mini_o3.stages.rl import (
    STAGE_METRICS,
    _metrics,
    latest_hf_checkpoint,
    verl_metrics,
)


def _hf(folder):
    """The files verl's checkpoint manager writes to ``actor/huggingface`` with ``hf_model`` saved."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (folder / "model.safetensors").write_bytes(b"weights")


def test_latest_merged_hf_folder_is_the_policy(tmp_path):
    save = tmp_path / "run" / "save"
    for step in (2, 10):  # 10 > 2 numerically, although "10" < "2" as text
        _hf(save / f"global_step_{step}" / "actor" / "huggingface")
        (save / f"global_step_{step}" / "actor" / "model_world_size_1_rank_0.pt").write_bytes(b"shard")
    (save / "global_step_12" / "actor" / "huggingface").mkdir(parents=True)  # config only: no weights (no hf_model)
    (save / "global_step_12" / "actor" / "huggingface" / "config.json").write_text("{}")
    assert latest_hf_checkpoint(tmp_path / "run") == save / "global_step_10" / "actor" / "huggingface"
    assert latest_hf_checkpoint(tmp_path / "empty") is None


def test_verl_file_logger_lines_become_stage_metrics(tmp_path, monkeypatch):
    from verl.utils.tracking import FileLogger

    source = tmp_path / "verl" / "metrics.jsonl"
    source.parent.mkdir()
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(source))
    logger = FileLogger("mini-o3", "mini-o3-rl")
    logger.log({"critic/score/mean": 0.25, "actor/pg_loss": 0.1}, step=1)
    logger.log({"critic/score/mean": 0.5, "val-core/synthetic/acc/mean@1": 0.75}, step=2)
    logger.finish()
    dest = tmp_path / "metrics.jsonl"
    assert verl_metrics(source, dest) == 2
    history = _metrics(dest)
    assert history[0] == {"step": 1, "critic/score/mean": 0.25, "actor/pg_loss": 0.1}
    assert history[1]["step"] == 2 and history[1]["val-core/synthetic/acc/mean@1"] == 0.75
    assert all(any(k.startswith(STAGE_METRICS) for k in rec if k != "step") for rec in history)
    assert verl_metrics(tmp_path / "missing.jsonl", tmp_path / "none.jsonl") == 0 and not (tmp_path / "none.jsonl").exists()
