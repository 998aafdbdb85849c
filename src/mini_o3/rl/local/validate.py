"""Validation Avg@k: ``k = val_n`` episodes per question under the validation limits; Avg@k is
the mean accuracy over all question × sample rows, overall and per ``data_source``."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from mini_o3.rollout.batched_rollout import RolloutStats, rollout
from mini_o3.rollout.hf_backend import RolloutBackend
from mini_o3.rollout.settings import SamplingConfig
from mini_o3.task import DEFAULT_PROMPT_SET, RewardWeights, RolloutLimits, TokenCounter

from ..data import Prompt
from ..rewards import DEFAULT_WEIGHTS, Judge, score_trajectory


def validate(
    backend: RolloutBackend,
    prompts: Sequence[Prompt],
    limits: RolloutLimits,
    sampling: SamplingConfig,
    *,
    n: int,
    counter: TokenCounter | None = None,
    weights: RewardWeights = DEFAULT_WEIGHTS,
    extract_mode: str = "strict",
    judge: Judge | None = None,
    prompt_set: str = DEFAULT_PROMPT_SET,
    parser: str = "strict",
    max_live: int = 1024,
    dump: Path | None = None,
) -> dict[str, float]:
    """``val/avg@k``, ``val/<data_source>/avg@k`` and rollout stats; rows go to ``dump`` (jsonl)."""
    samples = [prompt.episode(k) for prompt in prompts for k in range(n)]
    stats = RolloutStats()
    trajectories = rollout(backend, samples, limits, sampling, counter=counter, prompt_set=prompt_set,
                           parser=parser, max_live=max_live, stats=stats)
    per_source: dict[str, list[float]] = defaultdict(list)
    rows = []
    for i, traj in enumerate(trajectories):
        record = prompts[i // n].record
        score = score_trajectory(traj, record, weights, extract_mode=extract_mode, judge=judge)
        per_source[record.data_source].append(score.accuracy)
        rows.append({"id": record.id, "sample": i % n, "data_source": record.data_source, "accuracy": score.accuracy,
                     "reward": score.reward, "answer": traj.answer, "ground_truth": record.answer,
                     "termination": traj.termination, "num_turns": traj.num_turns, "outputs": traj.model_outputs})
    every = [a for accs in per_source.values() for a in accs]
    metrics = {f"val/avg@{n}": sum(every) / len(every)}
    for source, accs in sorted(per_source.items()):
        metrics[f"val/{source}/avg@{n}"] = sum(accs) / len(accs)
    metrics["val/exceed_ratio"] = sum(t.termination == "exceed" for t in trajectories) / len(trajectories)
    metrics["val/mean_turns"] = sum(t.num_turns for t in trajectories) / len(trajectories)
    if dump is not None:
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return metrics
