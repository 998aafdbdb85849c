"""The ``<grounding>`` tool-call parser.

Two modes:

* ``strict`` accepts and rejects exactly what the reference accepts: ``re.match`` of
  ``.*<grounding>{"bbox_2d": (.*),.*"source": [',"](.*)[',"]}</grounding>`` (DOTALL), then
  ``eval()`` of group 1, which must give a list of 4 items (Mini-o3 @ 8654dbf,
  ``vllm_async_engine.py`` ``process_tool_call`` and ``function_tools.py``
  ``prepare_grounding_inputs_multi_turn``). ``eval()`` is replaced by ``literal.evaluate``: the same
  values and exception texts (they go verbatim into the error observation), nothing executed; code
  such as ``[0.1+0.2, ...]`` is refused where the reference computes it. The 4 items are kept as
  evaluated; ``crop`` checks them after the source, in the reference's order.
* ``lenient`` accepts any JSON (or Python-literal) object inside the last
  ``<grounding>…</grounding>`` with a ``bbox_2d`` of 4 finite numbers and a string ``source``,
  whatever the whitespace and key order.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal, Union

from .literal import Resolved, evaluate

ParserMode = Literal["strict", "lenient"]
PARSER_MODES: tuple[str, ...] = ("strict", "lenient")

#: Any ``<grounding>…</grounding>`` pair makes a turn a tool turn (reference detection rule).
TOOL_CALL_RE = re.compile(r"<grounding>(.*?)</grounding>", re.DOTALL)
#: The reference argument regex, byte for byte.
STRICT_RE = re.compile(r".*<grounding>{\"bbox_2d\": (.*),.*\"source\": [\',\"](.*)[\',\"]}</grounding>", re.DOTALL)
#: What the reference raises when ``STRICT_RE`` does not match (``None.group``).
STRICT_NO_MATCH = "'NoneType' object has no attribute 'group'"


@dataclass(frozen=True)
class GroundingCall:
    """A parsed tool call. ``bbox`` holds the 4 items as written (relative 0–1 or absolute pixels):
    numbers, or in strict mode any literal value (the crop reports what the reference reports)."""

    bbox: tuple[object, object, object, object]
    source: str


@dataclass(frozen=True)
class GroundingError:
    """A tool call that could not be parsed; ``message`` goes into the error observation."""

    message: str


ParseResult = Union[GroundingCall, GroundingError]


def has_tool_call(text: str) -> bool:
    """True when ``text`` holds a ``<grounding>…</grounding>`` pair (a tool turn)."""
    return TOOL_CALL_RE.search(text) is not None


def parse_grounding(text: str, mode: ParserMode = "strict") -> ParseResult:
    """Parse the tool call in one assistant turn. Never raises on any string input."""
    if mode == "strict":
        return _parse_strict(text)
    if mode == "lenient":
        return _parse_lenient(text)
    raise ValueError(f"unknown parser mode {mode!r}; expected one of {PARSER_MODES}")


def _parse_strict(text: str) -> ParseResult:
    match = STRICT_RE.match(text)
    if match is None:
        return GroundingError(STRICT_NO_MATCH)
    try:
        value = evaluate(match.group(1))
    except Exception as exc:  # the reference catches every exception and shows str(exc)
        return GroundingError(str(exc))
    if isinstance(value, Resolved):
        return GroundingError(str(value.refusal()))
    # Reference: ``assert isinstance(obj['bbox_2d'], list) and len(...) == 4`` (no message).
    if not isinstance(value, list) or len(value) != 4:
        return GroundingError("")
    return GroundingCall(bbox=(value[0], value[1], value[2], value[3]), source=match.group(2))


def _parse_lenient(text: str) -> ParseResult:
    blocks = TOOL_CALL_RE.findall(text)
    if not blocks:
        return GroundingError("no <grounding>...</grounding> block found")
    body = blocks[-1].strip()
    obj = _load_object(body)
    if isinstance(obj, GroundingError):
        return obj
    if not isinstance(obj, dict):
        return GroundingError(f"the grounding argument must be a JSON object, got {type(obj).__name__}")
    missing = [key for key in ("bbox_2d", "source") if key not in obj]
    if missing:
        return GroundingError(f"There is no {missing[0]!r} in grounding argument: {body[:200]}")
    value, source = obj["bbox_2d"], obj["source"]
    if not isinstance(value, list) or len(value) != 4:
        return GroundingError(f"'bbox_2d' must be a list of 4 numbers, got {str(value)[:200]}")
    if not isinstance(source, str):
        return GroundingError(f"'source' must be a string, got {type(source).__name__}")
    bbox = _as_numbers(value)
    if isinstance(bbox, GroundingError):
        return bbox
    if not all(math.isfinite(v) for v in bbox if isinstance(v, float)):
        return GroundingError(f"'bbox_2d' must hold finite numbers, got {list(bbox)}")
    return GroundingCall(bbox=bbox, source=source)


def _load_object(body: str) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        pass
    try:
        value = evaluate(body)
    except Exception as exc:  # never raised on: any message from reading the text is shown
        return GroundingError(f"the grounding argument is not a JSON object: {exc}")
    return GroundingError(str(value.refusal())) if isinstance(value, Resolved) else value


def _as_numbers(values: list) -> tuple[float, float, float, float] | GroundingError:
    """Check the 4 items are real numbers; they are kept as written (int or float)."""
    for item in values:
        if not isinstance(item, (int, float)):
            return GroundingError(f"'bbox_2d' must hold 4 numbers, got {item!r:.100}")
    return (values[0], values[1], values[2], values[3])
