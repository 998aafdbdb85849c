"""Answer extraction from the assistant turns of a trajectory (reference ``general_qa_tool.py``
``inner_acc_reward``, Mini-o3/Mini-o3 @ 8654dbf, lines 283-305: the turns joined with ``' '``)."""

from __future__ import annotations

import re
from typing import Literal, Optional, Sequence

ExtractMode = Literal["strict", "split", "strict_v2"]
EXTRACT_MODES: tuple[str, ...] = ("strict", "split", "strict_v2")
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FINAL_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>$", re.DOTALL)
#: A well-formed answer turn must end with an answer block (the reference ``void`` test).
_ENDS_WITH_ANSWER_RE = re.compile(r".*<answer>.*</answer>$", re.DOTALL)


def extract_answer(turn_outputs: Sequence[str], mode: ExtractMode = "strict") -> Optional[str]:
    """What the reference hands the judge, or ``None`` (no answer: accuracy 0, no judge call).

    ``strict`` (the recipe): the first ``<answer>…</answer>`` of the joined turns, unstripped.
    ``split`` (the verl yaml default): ``joined.split("<answer>")[-1].split("</answer>")[0].strip()``,
    exactly as upstream: never ``None``, so without tags it is the whole stripped text.
    ``strict_v2``: ``<answer>(.*?)</answer>$`` searched in the joined text, unstripped.
    """
    joined = " ".join(turn_outputs)
    if mode == "strict":
        match = _ANSWER_RE.search(joined)
        return match.group(1) if match else None
    if mode == "split":
        return joined.split("<answer>")[-1].split("</answer>")[0].strip()
    if mode == "strict_v2":
        match = _FINAL_ANSWER_RE.search(joined)
        return match.group(1) if match else None
    raise ValueError(f"unknown answer extraction mode {mode!r}; expected one of {', '.join(EXTRACT_MODES)}")


def ends_with_answer(text: str) -> bool:
    """True when an answer turn ends with ``<answer>…</answer>`` (else it is ``void``)."""
    return _ENDS_WITH_ANSWER_RE.match(text) is not None
