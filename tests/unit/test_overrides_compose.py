"""Overrides compose: ``mini-o3 run --param eval_overrides=[...]`` adds to the embedded defaults
(today ``limit=2`` silently dropped the tiny eval settings: 12 turns x 8192 tokens x 2 MP on CPU)."""

from __future__ import annotations

from pathlib import Path

from mini_o3.evaluate.runner import resolve_config
from mini_o3.overrides import compose_params, merge_overrides


def test_merge_keeps_defaults_and_lets_given_keys_win():
    assert merge_overrides(["max_turns=2", "k=1"], ["limit=2", "k=3"]) == ["max_turns=2", "limit=2", "k=3"]
    assert merge_overrides([], ["a=1"]) == ["a=1"] and merge_overrides(["a=1"], []) == ["a=1"]


def test_compose_merges_override_lists_only():
    defaults = {"p4_eval_overrides": ["max_turns=2"], "p1_data_synthetic": ["n_train=8"], "p4_eval_k": 2}
    out = compose_params(defaults, {"p4_eval_overrides": ["limit=2"], "p1_data_synthetic": ["n_train=4"], "p4_eval_k": 1})
    assert out == {"p4_eval_overrides": ["max_turns=2", "limit=2"], "p1_data_synthetic": ["n_train=4"], "p4_eval_k": 1}
    assert compose_params(defaults, {"p9_new": "x"})["p9_new"] == "x" and defaults["p4_eval_overrides"] == ["max_turns=2"]


def test_embedded_eval_defaults_survive_a_limit():
    from mini_o3.kfp.local_run import EmbeddedConfig, embedded_params

    defaults = embedded_params(EmbeddedConfig(profile="smoke"), Path("model"))
    values = compose_params(defaults, {"p4_eval_overrides": ["limit=2"]})
    config = resolve_config(None, values["p4_eval_overrides"])
    limits = config.limits()
    assert config.limit == 2 and limits.max_turns == 2 and limits.max_tokens_per_turn == 8 and limits.max_pixels == 60000
