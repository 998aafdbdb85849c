"""verl tool-call parser for Mini-o3's ``<grounding>`` calls (``multi_turn.format=minio3_grounding``).

A turn is a tool turn when it holds ``<grounding>…</grounding>`` (the task kit's detection rule).
The call is parsed by ``mini_o3.task.parse_grounding`` (strict = the reference regex; the
``minio3_grounding_lenient`` parser accepts any JSON object). A call that does not parse is still
returned, as ``{"error": message}``: the crop tool turns it into the reference error observation.
A call whose items JSON cannot carry exactly (a tuple, bytes, ...) is returned as ``{"text": turn,
"parser": mode}``, and the crop tool parses the turn with the task kit itself.
"""

from __future__ import annotations

import json
from typing import Any

from verl.experimental.agent_loop.tool_parser import FunctionCall, ToolParser

from mini_o3.task import GroundingError, has_tool_call, parse_grounding
from mini_o3.task.grounding import ParserMode

from .names import CROP_TOOL_NAME, PARSER_NAMES  # noqa: F401  (re-exported)


def grounding_call(text: str, mode: ParserMode = "strict") -> FunctionCall | None:
    """The ``FunctionCall`` of one assistant turn: None when the turn has no ``<grounding>`` pair,
    else ``crop`` with ``{"bbox_2d", "source"}`` or ``{"error": message}`` arguments."""
    if not has_tool_call(text):
        return None
    parsed = parse_grounding(text, mode)
    if isinstance(parsed, GroundingError):
        arguments: dict[str, Any] = {"error": parsed.message}
    elif all(_json_exact(item) for item in parsed.bbox):
        arguments = {"bbox_2d": list(parsed.bbox), "source": parsed.source}
    else:  # items JSON would change (a tuple, bytes, ...): the tool parses the turn itself
        arguments = {"text": text, "parser": mode}
    return FunctionCall(name=CROP_TOOL_NAME, arguments=json.dumps(arguments, ensure_ascii=False))


def _json_exact(value: Any) -> bool:
    """True when a JSON round trip gives ``value`` back with the same types."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if type(value) is list:
        return all(_json_exact(item) for item in value)
    if type(value) is dict:
        return all(type(key) is str and _json_exact(item) for key, item in value.items())
    return False


class _GroundingParser(ToolParser):
    mode: ParserMode = "strict"

    async def extract_tool_calls(self, responses_ids: list[int], tools: Any = None) -> tuple[str, list[FunctionCall]]:
        text = self.tokenizer.decode(responses_ids, skip_special_tokens=True)
        call = grounding_call(text, self.mode)
        return text, [call] if call is not None else []


@ToolParser.register("minio3_grounding")
class GroundingToolParser(_GroundingParser):
    """Strict parser: accepts exactly what the released code's regex accepts."""

    mode: ParserMode = "strict"


@ToolParser.register("minio3_grounding_lenient")
class LenientGroundingToolParser(_GroundingParser):
    """Lenient parser: any JSON object with ``bbox_2d`` and ``source``, any whitespace / key order."""

    mode: ParserMode = "lenient"
