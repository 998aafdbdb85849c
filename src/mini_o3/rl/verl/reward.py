"""verl reward function (``reward.custom_reward_function.path`` = this file, ``name=compute_score``).

The score comes from the assistant turn texts the agent loop passes as ``extra_info.turn_outputs``
(never from ``solution_str``: verl decodes the whole response, observation prompts included, and
those mention ``<answer>``), scored by ``mini_o3.rl.rewards.score_outputs`` — the same
function the reference engine calls: answer extraction, the judge or the record's rule scorer,
format reward, ``compose_reward``. ``extra_info.record`` is the row's ``BenchRecord``.

Settings arrive as ``reward_kwargs`` (written by the config builder): the reward weights,
``extract_answer_tags`` and ``judge`` (``RLJudgeConfig`` as JSON; credentials stay in the env).
The returned dict is ``score`` plus ``acc``, ``format``, ``judge_failed``, ``exceed``, ``void``,
``turns`` (verl logs them and the Mini-o3 sampler filters on them).
"""

from __future__ import annotations

import functools
from typing import Any

from mini_o3.data.bench import BenchRecord
from mini_o3.rl.config import RLJudgeConfig
from mini_o3.rl.rewards import Judge, make_judge, score_outputs
from mini_o3.task import RewardWeights


@functools.lru_cache(maxsize=4)
def _judge(config_json: str) -> Judge | None:
    """One judge client per process and configuration (built lazily, on the first score)."""
    return make_judge(RLJudgeConfig.model_validate_json(config_json))


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    *,
    acc_reward_weight: float = 1.0,
    format_reward_weight: float = 0.0,
    tool_call_penalty: float = 0.0,
    use_tool_reward_weight: float = 0.0,
    extract_answer_tags: str = "strict",
    judge: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Mini-o3 trajectory reward; ``judge`` is an ``RLJudgeConfig`` JSON string (None: rule scorer)."""
    info = dict(extra_info or {})
    outputs = info.get("turn_outputs")
    record_fields = info.get("record")
    if outputs is None or record_fields is None:
        raise ValueError(
            f"compute_score({data_source!r}): extra_info lacks turn_outputs / record; the rows must come from "
            "mini_o3.rl.verl.data and run through the minio3_train / minio3_val agent loops"
        )
    record = BenchRecord.model_validate(dict(record_fields))
    if record.answer != ground_truth:
        raise ValueError(f"compute_score: ground truth {ground_truth!r} differs from record {record.id}'s answer {record.answer!r}")
    weights = RewardWeights(acc_reward_weight, format_reward_weight, tool_call_penalty, use_tool_reward_weight)
    client = _judge(judge) if judge else None
    score = score_outputs(list(outputs), record, weights, extract_mode=extract_answer_tags, judge=client)
    judge_failed = score.judge_failed
    reward = score.reward
    if judge_failed and info.get("split") == "val" and judge:
        reward = 0.0  # validation: a failed judge call scores 0 (seed); counted in judge_failed
    return {
        "score": float(reward),
        "acc": float(score.accuracy),
        "format": float(score.format),
        "judge_failed": bool(judge_failed),
        "exceed": bool(info.get("exceed", False)),
        "void": bool(info.get("void", False)),
        "turns": int(info.get("turns") or len(outputs)),
    }
