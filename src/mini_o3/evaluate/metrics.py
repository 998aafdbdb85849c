"""Pure metric functions over per-question samples (questions are the independent units).

Notation: question i has n_i scored samples s_ij in [0, 1] and c_i = sum_j s_ij.

* Avg@k = mean_i c_i / n_i (every question has n_i = k unless samples were excluded);
* pass@k (unbiased, Chen et al. 2021) = mean_i 1 - C(n-c, k)/C(n, k), via the stable product;
* maj@k: majority vote over normalised answers; a tie for first place counts as wrong;
* SE = sd_i(c_i/n_i) / sqrt(N); a seeded percentile bootstrap over questions gives the 95% CI.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one question with ``c`` correct out of ``n`` samples (``k <= n``)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_ks(k: int) -> list[int]:
    """1, 2, 4, … up to k, with k itself always last."""
    out, value = [], 1
    while value < k:
        out.append(value)
        value *= 2
    return out + [k]


def question_means(scores: Sequence[Sequence[float]]) -> list[float]:
    """c_i / n_i per question; questions without samples are skipped."""
    return [sum(s) / len(s) for s in scores if len(s)]


def avg_at_k(scores: Sequence[Sequence[float]]) -> float:
    """Mean over questions of the per-question mean score (0.0 for no questions)."""
    means = question_means(scores)
    return float(np.mean(means)) if means else 0.0


def mean_pass_at_k(scores: Sequence[Sequence[float]], k: int) -> float | None:
    """pass@k over the questions with at least k samples (scores >= 0.5 count as correct)."""
    values = [pass_at_k(len(s), sum(x >= 0.5 for x in s), k) for s in scores if len(s) >= k]
    return float(np.mean(values)) if values else None


def majority_correct(answers: Sequence[str | None], scores: Sequence[float]) -> bool:
    """maj@k of one question: the most frequent non-empty normalised answer wins; a tie for first
    place, or no answer at all, is wrong; the winner is correct when most of its samples scored."""
    votes = Counter(a for a in answers if a)
    if not votes:
        return False
    ranked = votes.most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return False
    winner = ranked[0][0]
    won = [s for a, s in zip(answers, scores) if a == winner]
    return sum(won) / len(won) >= 0.5


def maj_at_k(answers: Sequence[Sequence[str | None]], scores: Sequence[Sequence[float]]) -> float:
    """Share of questions whose majority answer is correct."""
    if not answers:
        return 0.0
    return float(np.mean([majority_correct(a, s) for a, s in zip(answers, scores)]))


def standard_error(values: Sequence[float]) -> float | None:
    """sd(values, ddof=1) / sqrt(N); ``None`` for fewer than two values."""
    if len(values) < 2:
        return None
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean, resampling questions; ``None`` for no values."""
    if not len(values):
        return None
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n_boot, len(data)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def score_summary(scores: Sequence[Sequence[float]], answers: Sequence[Sequence[str | None]], k: int, *, seed: int = 0) -> dict[str, Any]:
    """Avg@k, SE, 95% CI, pass@{1,2,4,…,k} and maj@k of one group of questions."""
    means = question_means(scores)
    ci = bootstrap_ci(means, seed=seed)
    return {
        "questions": len(means),
        "samples": sum(len(s) for s in scores),
        "k": k,
        "avg_at_k": avg_at_k(scores),
        "se": standard_error(means),
        "ci95": list(ci) if ci else None,
        "pass_at_k": {str(j): mean_pass_at_k(scores, j) for j in pass_ks(k)},
        "maj_at_k": maj_at_k(answers, scores),
    }


def follows_protocol(sample: Mapping[str, Any]) -> bool:
    """An episode that follows the protocol: it ends on an answer turn with an extracted answer and
    none of its tool calls failed to parse or crop (``trajectory.turns[*].error``)."""
    turns = (sample.get("trajectory") or {}).get("turns") or []
    return sample["termination"] == "answer" and sample["answer"] is not None and not any(t.get("error") for t in turns)


def chance_level(options: Sequence[Sequence[str]]) -> float:
    """Expected score of a uniform guess over each question's options (0 for free-form ones)."""
    return sum(1 / len(o) for o in options if o) / len(options) if options else 0.0


def behaviour_summary(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Turn histogram, tool calls, termination rates, judge failures and token usage of stored
    sample records (fields ``num_turns``, ``tool_calls``, ``num_crops``, ``termination``,
    ``answer``, ``judge_failed``, ``generated_tokens``, ``context_tokens``, ``trajectory``) and the
    share of episodes that follow the protocol (``follows_protocol``)."""
    n = len(samples)
    if not n:
        return {"samples": 0}

    def rate(predicate) -> float:
        return sum(1 for s in samples if predicate(s)) / n

    turns = Counter(int(s["num_turns"]) for s in samples)
    generated = [int(s.get("generated_tokens") or 0) for s in samples]
    return {
        "samples": n,
        "turn_histogram": {str(t): turns[t] for t in sorted(turns)},
        "mean_turns": sum(int(s["num_turns"]) for s in samples) / n,
        "tool_calls": sum(int(s["tool_calls"]) for s in samples),
        "mean_tool_calls": sum(int(s["tool_calls"]) for s in samples) / n,
        "mean_crops": sum(int(s["num_crops"]) for s in samples) / n,
        "exceed_rate": rate(lambda s: s["termination"] == "exceed"),
        "void_rate": rate(lambda s: s["termination"] == "void"),
        "no_answer_rate": rate(lambda s: s["answer"] is None),
        "valid_rate": rate(follows_protocol),
        "judge_calls": sum(1 for s in samples if s.get("judge")),
        "judge_failures": sum(1 for s in samples if s.get("judge_failed")),
        "generated_tokens": sum(generated),
        "mean_generated_tokens": sum(generated) / n,
        "mean_context_tokens": sum(int(s.get("context_tokens") or 0) for s in samples) / n,
    }


# -- MME-RealWorld breakdown -----------------------------------------------------------------
# The official aggregation, yfzhang114/MME-RealWorld @87096fc evaluation/eval_your_results.py
# (lines 70-126; VLMEvalKit's get_dimension_rating and lmms-eval's mme_realworld_aggregate_results
# are copies): items are counted per Task (Perception / Reasoning) > Subtask (domain) > Category,
# and every accuracy (category, subtask, task, overall) is correct items / items of that group,
# i.e. item-weighted. The README adds "Avg-C", the unweighted mean of a task's subtask accuracies.


def mme_category_key(category: str) -> str:
    """The official category key: lower-cased; any ``…attribute…`` category folds into
    ``<first part>/attribute`` (eval_your_results.py lines 73, 78-79)."""
    key = category.lower()
    if "attribute" in key:
        key = key.split("/")[0] + "/attribute"
    return key


def _accuracy(scores: list[float]) -> dict[str, Any]:
    return {"questions": len(scores), "accuracy": sum(scores) / len(scores)}


def mme_realworld_accuracy(items: Sequence[tuple[str, str, str, float]]) -> dict[str, Any]:
    """MME-RealWorld's official breakdown of ``(task, subtask, category, score)`` per question.

    ``score`` is the question's mean sample score in [0, 1] (its 0/1 correctness when k = 1, which
    reproduces the official numbers exactly). Returns ``questions`` and item-weighted ``accuracy``
    overall, and per task (Perception first) the same plus ``avg_c`` (unweighted mean of its
    subtask accuracies) and ``subtasks`` → ``categories`` (official keys). Only groups holding
    questions are listed (the official printout also lists empty subtasks, as 0)."""
    tree: dict[str, dict[str, dict[str, list[float]]]] = {}
    for task, subtask, category, score in items:
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"MME-RealWorld question score must be in [0, 1], got {score!r}")
        tree.setdefault(task, {}).setdefault(subtask, {}).setdefault(mme_category_key(category), []).append(score)
    every = [s for subs in tree.values() for cats in subs.values() for scores in cats.values() for s in scores]
    if not every:
        return {"questions": 0, "accuracy": None, "tasks": {}}
    tasks = {}
    for task in sorted(tree, key=lambda t: ({"Perception": 0, "Reasoning": 1}.get(t, 2), t)):
        subtasks = {}
        for subtask in sorted(tree[task]):
            cats = tree[task][subtask]
            subtasks[subtask] = {
                **_accuracy([s for scores in cats.values() for s in scores]),
                "categories": {c: _accuracy(cats[c]) for c in sorted(cats)},
            }
        tasks[task] = {
            **_accuracy([s for cats in tree[task].values() for scores in cats.values() for s in scores]),
            "avg_c": sum(s["accuracy"] for s in subtasks.values()) / len(subtasks),
            "subtasks": subtasks,
        }
    return {**_accuracy(every), "tasks": tasks}
