"""Trajectory rewards of both RL engines, from the task kit: rule scorer by answer type (or the LLM judge, when a
client is given), format reward and ``compose_reward``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mini_o3.data.bench import BenchRecord
from mini_o3.task import (
    RewardWeights,
    Trajectory,
    compose_reward,
    extract_answer,
    format_reward,
    has_tool_call,
)

from .config import RLJudgeConfig

#: The recipe's weights (score == accuracy).
DEFAULT_WEIGHTS = RewardWeights()

#: ``judge(question, ground_truth, prediction) -> 1.0 / 0.0``, or None when the call failed.
Judge = Callable[[str, str, str], float | None]


@dataclass(frozen=True)
class Score:
    reward: float
    accuracy: float
    format: float
    judge_failed: bool = False


def score_trajectory(
    traj: Trajectory,
    record: BenchRecord,
    weights: RewardWeights = DEFAULT_WEIGHTS,
    *,
    extract_mode: str = "strict",
    judge: Judge | None = None,
) -> Score:
    """Accuracy of the extracted answer (0 without one; the judge is not called then)."""
    return score_outputs(traj.model_outputs, record, weights, extract_mode=extract_mode, judge=judge)


def score_outputs(
    outputs: Sequence[str],
    record: BenchRecord,
    weights: RewardWeights = DEFAULT_WEIGHTS,
    *,
    extract_mode: str = "strict",
    judge: Judge | None = None,
) -> Score:
    """Score an episode given its assistant turn texts (what both RL engines call): the judge (or
    the record's rule scorer) on the extracted answer, the format reward, ``compose_reward``."""
    prediction = extract_answer(list(outputs), mode=extract_mode)  # type: ignore[arg-type]
    failed = False
    if prediction is None:
        accuracy = 0.0
    elif judge is not None:
        verdict = judge(record.problem, record.answer, prediction)
        failed, accuracy = verdict is None, float(verdict or 0.0)
    else:
        accuracy = record.rule_score(prediction)
    fmt = format_reward(list(outputs))
    used_tool = any(has_tool_call(text) for text in outputs)
    return Score(compose_reward(accuracy, fmt, used_tool, weights), accuracy, fmt, failed)


def make_judge(config: RLJudgeConfig) -> Judge | None:
    """None when the judge is off (rule scorer); else the judge client (``mini_o3.judge``) configured like
    the seed (Azure from ``END_POINT``/``API_VERSION``/``API_KEY``, or ``OPENAI_BASE_URL``/``OPENAI_API_KEY``)."""
    if not config.enabled:
        return None
    from mini_o3.judge.client import Judge as JudgeClient

    if not (config.base_url or os.environ.get(config.azure_endpoint_env) or os.environ.get(config.openai_base_url_env)
            or os.environ.get(config.openai_key_env)):
        raise ValueError(
            f"judge.enabled is true but neither ${config.azure_endpoint_env} (Azure endpoint) nor "
            f"${config.openai_base_url_env} / ${config.openai_key_env} is set; "
            "set judge.enabled=false to score with the rule scorer"
        )
    client = JudgeClient(config)

    def judge(question: str, ground_truth: str, prediction: str) -> float | None:
        result = client(question, ground_truth, prediction)
        return None if result.failed else result.score

    return judge
