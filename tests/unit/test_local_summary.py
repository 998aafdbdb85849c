"""The embedded run ends with the learning table (issue 17, req 8): models, Avg@k ± CI, valid rate,
chance and the paired deltas, read from the report's ``learning`` block."""

from __future__ import annotations

import json

from rich.console import Console

from mini_o3.kfp.local_summary import learning_table, read_learning

LEARNING = {
    "chance": 0.25,
    "models": {"base": {"avg_at_k": 0.0, "ci95": [0.0, 0.0], "valid_rate": 0.0, "mean_turns": 1.0},
               "sft": {"avg_at_k": 0.61, "ci95": [0.55, 0.67], "valid_rate": 0.97, "mean_turns": 2.98},
               "rl": {"avg_at_k": 0.7, "ci95": [0.64, 0.76], "valid_rate": 0.99, "mean_turns": 3.0}},
    "deltas": {"rl_minus_sft": {"mean": 0.09, "ci95": [0.05, 0.13], "questions": 128, "excludes_zero": True}},
}


def test_table_shows_every_model_chance_and_delta():
    console = Console(record=True, width=100)
    console.print(learning_table(LEARNING))
    text = console.export_text()
    for needle in ("base (random init)", "SFT + GRPO", "0.610", "[0.550, 0.670]", "97.0%", "2.98", "chance",
                   "0.250", "rl minus sft: +0.090 [+0.050, +0.130] (CI excludes 0)"):
        assert needle in text, needle
    assert text.index("base (random init)") < text.index("SFT ") < text.index("SFT + GRPO")


def test_read_learning(tmp_path):
    assert read_learning(tmp_path) is None
    (tmp_path / "report.json").write_text(json.dumps({"benchmarks": {}}))
    assert read_learning(tmp_path) is None
    (tmp_path / "report.json").write_text(json.dumps({"learning": LEARNING}))
    assert read_learning(tmp_path)["deltas"]["rl_minus_sft"]["mean"] == 0.09
