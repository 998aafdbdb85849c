"""Writers of assistant-turn text in the Mini-o3 format: ``<think>…</think>``, the crop call
``<grounding>{"bbox_2d": [...], "source": "..."}</grounding>`` and ``<answer>…</answer>``.

What scripted policies (the synthetic oracles) and tests emit; the parsers (``grounding``,
``answer``, ``reward``) read it. The JSON is ``json.dumps`` with its default separators, keys in
the order ``bbox_2d``, ``source``: the released cold-start data's form, which the strict
reference regex accepts."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .crop import ORIGINAL_IMAGE


def observation_source(index: int) -> str:
    """``source`` of observation ``index`` (1 = the first crop)."""
    return f"observation_{index}"


def think_block(text: str) -> str:
    """``<think>text</think>``."""
    return f"<think>{text}</think>"


def grounding_block(bbox_2d: Sequence[float], source: str = ORIGINAL_IMAGE) -> str:
    """``<grounding>{"bbox_2d": [x0, y0, x1, y1], "source": source}</grounding>``."""
    call = json.dumps({"bbox_2d": list(bbox_2d), "source": source})
    return f"<grounding>{call}</grounding>"


def answer_block(text: str) -> str:
    """``<answer>text</answer>``."""
    return f"<answer>{text}</answer>"


def tool_turn(think: str, bbox_2d: Sequence[float], source: str = ORIGINAL_IMAGE) -> str:
    """A crop turn: ``<think>…</think>\\n<grounding>…</grounding>``."""
    return f"{think_block(think)}\n{grounding_block(bbox_2d, source)}"


def answer_turn(think: str, answer: str) -> str:
    """The final turn: ``<think>…</think>\\n<answer>…</answer>``."""
    return f"{think_block(think)}\n{answer_block(answer)}"
