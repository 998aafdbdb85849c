"""Reward composition (reference ``general_qa_tool*`` score functions, §14.5 of the protocol)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

_SINGLE_TURN_RE = re.compile(r"^<think>.*</think>.*<answer>.*</answer>$", re.DOTALL)
_TOOL_TURN_RE = re.compile(r"^<think>.*</think>.*<grounding>.*</grounding>$", re.DOTALL)
_GROUNDING_RE = re.compile(r"<grounding>(.*?)</grounding>", re.DOTALL)


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the trajectory score. Defaults are the recipe's (score == accuracy).

    Attributes:
        accuracy: weight of the 0/1 accuracy (``acc_reward_weight``).
        format: weight of the grounding-format reward (``format_reward_weight``).
        tool_call_penalty: accuracy is scaled by ``1 - penalty`` when any tool was called.
        use_tool: bonus added when a tool was called (``use_tool_reward_weight``).
    """

    accuracy: float = 1.0
    format: float = 0.0
    tool_call_penalty: float = 0.0
    use_tool: float = 0.0


def format_reward(turn_outputs: Sequence[str]) -> float:
    """The grounding-format reward (weight 0 in the recipe): ``grounding_format_reward(...)[0]``."""
    return grounding_format_reward(turn_outputs)[0]


def grounding_format_reward(turn_outputs: Sequence[str]) -> tuple[float, int]:
    """``(format_score, tool_call_count)`` exactly as the reference ``grounding_format_reward``
    (Mini-o3/Mini-o3 @ 8654dbf ``verl/utils/reward_score/general_qa_tool.py`` lines 235-281).

    One turn: the stripped turn must be an answer turn. Several: every turn but the last, stripped,
    must be a tool turn (the check stops at the first that is not; turns up to it are counted when
    they hold a ``<grounding>…</grounding>``), and the last turn, *not* stripped, an answer turn.
    An empty list scores ``(0.0, 0)`` (the reference raises ``IndexError``).
    """
    if not turn_outputs:
        return 0.0, 0
    if len(turn_outputs) == 1:
        response = turn_outputs[0].strip()
        return float(_is_answer_turn(response)), int(bool(_GROUNDING_RE.search(response)))
    calls, tools_ok = 0, True
    for turn in turn_outputs[:-1]:
        response = turn.strip()
        calls += bool(_GROUNDING_RE.search(response))
        if not _is_tool_turn(response):
            tools_ok = False
            break
    return float(tools_ok and _is_answer_turn(turn_outputs[-1])), calls


def _is_answer_turn(text: str) -> bool:
    """Reference ``is_valid_direct_answer_grounding``."""
    return (
        _SINGLE_TURN_RE.match(text) is not None
        and text.count("<think>") == 1 and text.count("</think>") == 1
        and text.count("<answer>") == 1 and text.count("</answer>") == 1
        and "<grounding>" not in text and "</grounding>" not in text
    )


def _is_tool_turn(text: str) -> bool:
    """Reference ``is_valid_tool_call_grounding``; its count test is ``!= 1 and != 1`` (only a turn
    with neither exactly one ``<grounding>`` nor exactly one ``</grounding>`` fails it)."""
    return (
        _TOOL_TURN_RE.match(text) is not None
        and text.count("<think>") == 1 and text.count("</think>") == 1
        and not (text.count("<grounding>") != 1 and text.count("</grounding>") != 1)
        and "<answer>" not in text and "</answer>" not in text
    )


def compose_reward(accuracy: float, format_score: float, used_tool: bool, weights: RewardWeights = RewardWeights()) -> float:
    """``tool_factor * w_acc * acc + w_format * format + (w_tool if used_tool)``."""
    tool_factor = (1.0 - weights.tool_call_penalty) if used_tool else 1.0
    tool_bonus = weights.use_tool if used_tool else 0.0
    return tool_factor * weights.accuracy * accuracy + weights.format * format_score + tool_bonus
