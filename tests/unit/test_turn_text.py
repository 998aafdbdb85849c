"""The task kit's turn writers: the exact bytes of the oracle / cold-start format, read back by
the kit's own parsers (strict grounding regex, strict answer extraction, format reward)."""

from mini_o3.task import (
    answer_block, answer_turn, extract_answer, format_reward, grounding_block, observation_source, parse_grounding,
    think_block, tool_turn,
)
from mini_o3.task.grounding import GroundingCall


def test_writers_emit_the_reference_bytes():
    assert think_block("look") == "<think>look</think>"
    assert answer_block("(B) blue") == "<answer>(B) blue</answer>"
    assert grounding_block((0.1, 0.25, 0.5, 1.0)) == (
        '<grounding>{"bbox_2d": [0.1, 0.25, 0.5, 1.0], "source": "original_image"}</grounding>')
    assert tool_turn("zoom", [0, 0, 1, 1], observation_source(2)) == (
        '<think>zoom</think>\n<grounding>{"bbox_2d": [0, 0, 1, 1], "source": "observation_2"}</grounding>')
    assert answer_turn("I see it.", "K7Q") == "<think>I see it.</think>\n<answer>K7Q</answer>"


def test_parsers_read_what_the_writers_write():
    call = parse_grounding(tool_turn("zoom", [0.125, 0.25, 0.5, 0.75], observation_source(1)), "strict")
    assert isinstance(call, GroundingCall)
    assert (list(call.bbox), call.source) == ([0.125, 0.25, 0.5, 0.75], "observation_1")
    final = answer_turn("done", "red")
    assert extract_answer([final]) == "red"
    assert format_reward([tool_turn("zoom", [0, 0, 1, 1]), final]) == 1.0
