"""Evaluation metrics against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mini_o3.evaluate.config import EvalConfig
from mini_o3.task import EVAL_LIMITS
from mini_o3.evaluate.metrics import (
    avg_at_k,
    behaviour_summary,
    bootstrap_ci,
    maj_at_k,
    majority_correct,
    mean_pass_at_k,
    pass_at_k,
    pass_ks,
    score_summary,
    standard_error,
)


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(32, 8, 1) == pytest.approx(0.25)  # pass@1 = c/n
    assert pass_at_k(4, 3, 2) == 1.0  # n - c < k
    assert pass_at_k(4, 0, 4) == 0.0
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(2, 1, 3)


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_binomials(args):
    n, c, k = args
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-9)


def test_pass_ks_and_mean():
    assert pass_ks(32) == [1, 2, 4, 8, 16, 32]
    assert pass_ks(6) == [1, 2, 4, 6]
    assert pass_ks(1) == [1]
    scores = [[1, 0, 0, 0], [0, 0, 0, 0]]
    assert mean_pass_at_k(scores, 2) == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert mean_pass_at_k([[1.0]], 2) is None  # not enough samples


def test_avg_at_k():
    assert avg_at_k([[1, 0, 1, 1], [0, 0, 0, 0]]) == pytest.approx(0.375)
    assert avg_at_k([[1, 1], [0]]) == pytest.approx(0.5)  # excluded samples: c_i / n_i
    assert avg_at_k([]) == 0.0


def test_majority_vote_and_ties():
    assert majority_correct(["A", "A", "B"], [1, 1, 0])
    assert not majority_correct(["B", "B", "A"], [0, 0, 1])
    assert not majority_correct(["A", "B"], [1, 0])  # tie for first place is wrong
    assert not majority_correct(["A", "A", "B", "B", "C"], [1, 1, 0, 0, 0])
    assert majority_correct([None, None, "A"], [0, 0, 1])  # no-answer samples do not vote
    assert not majority_correct([None, None], [0, 0])
    assert maj_at_k([["A", "A", "B"], ["A", "B"]], [[1, 1, 0], [1, 0]]) == pytest.approx(0.5)


def test_standard_error_and_bootstrap():
    assert standard_error([0.0, 1.0]) == pytest.approx(0.5)  # sd = 0.7071, / sqrt(2)
    assert standard_error([0.5, 0.25, 1.0]) == pytest.approx(0.22048, abs=1e-5)
    assert standard_error([1.0]) is None
    assert bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))
    values = [0.0, 1.0] * 10
    lo, hi = bootstrap_ci(values, seed=3)
    assert (lo, hi) == bootstrap_ci(values, seed=3)  # seeded
    assert lo < 0.5 < hi and 0.2 < lo and hi < 0.8
    assert bootstrap_ci([]) is None


def test_score_summary_fields():
    s = score_summary([[1, 0], [1, 1]], [["A", "B"], ["A", "A"]], 2, seed=0)
    assert s["questions"] == 2 and s["samples"] == 4 and s["avg_at_k"] == pytest.approx(0.75)
    assert s["pass_at_k"] == {"1": pytest.approx(0.75), "2": pytest.approx(1.0)}
    assert s["maj_at_k"] == pytest.approx(0.5) and s["se"] == pytest.approx(0.25)


def test_behaviour_summary():
    base = dict(num_crops=0, generated_tokens=10, context_tokens=100, judge=None, judge_failed=False)
    samples = [
        dict(base, num_turns=1, tool_calls=0, termination="answer", answer="A"),
        dict(base, num_turns=3, tool_calls=2, num_crops=2, termination="exceed", answer=None),
        dict(base, num_turns=1, tool_calls=0, termination="void", answer=None, judge={"score": None}, judge_failed=True),
    ]
    b = behaviour_summary(samples)
    assert b["turn_histogram"] == {"1": 2, "3": 1} and b["tool_calls"] == 2
    assert b["exceed_rate"] == pytest.approx(1 / 3) and b["void_rate"] == pytest.approx(1 / 3)
    assert b["no_answer_rate"] == pytest.approx(2 / 3) and b["judge_failures"] == 1 and b["generated_tokens"] == 30


def test_config_k_and_hash():
    c = EvalConfig()
    assert [c.k_for(ds) for ds in ("visual_probe_hard", "vstar_bench", "hrbench_8k", "mme_realworld", "synthetic_easy")] == [32, 32, 8, 1, 1]
    assert EvalConfig(k=4).k_for("visual_probe_hard") == 4
    assert c.rollout_limits.max_turns == 12 and c.limits().max_turns == 12 and c.limits().max_images == 12
    assert c.limits() == EVAL_LIMITS and EvalConfig(max_images=4).limits() == EVAL_LIMITS.with_(max_images=4)
    assert EvalConfig(k=4, limit=3).config_hash("p") == c.config_hash("p")  # k / limit reuse samples
    assert EvalConfig(max_turns=32).config_hash("p") != c.config_hash("p")
    assert c.config_hash("q") != c.config_hash("p")
    with pytest.raises(ValueError, match="prompt set"):
        EvalConfig(prompt_set="nope")
