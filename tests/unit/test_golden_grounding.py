"""Golden tool calls: the task kit's parser + crop give upstream's outcome on every stored case.

The rule (Mini-o3/Mini-o3 @ 8654dbf): ``AsyncvLLMEngine.process_tool_call`` in
verl/workers/rollout/vllm_rollout/vllm_async_engine.py (lines 520-582: regex, ``eval(bbox)``,
``prepare_grounding_inputs_multi_turn``, ``except Exception as e: error_info = str(e)``, the
"ERROR occurs during grounding. Error Information: {error_info}.\\n" observation) and
function_tools.py ``prepare_grounding_inputs_multi_turn`` (lines 29-74). The cases in
tests/unit/golden/grounding_upstream.json come from running that code (see its header and
tests/unit/golden/grounding_crop.md). Where upstream's ``eval()`` would run code or use a name it
resolves (class ``code``), the kit may refuse instead, with its documented message.
"""

import json
import platform
import re
from pathlib import Path

import pytest
from PIL import Image

from mini_o3.task import MINI_O3_V1, CropError, GroundingError, crop, parse_grounding
from mini_o3.task.crop import resized_observation_size
from mini_o3.task.literal import _CALL_LOCALS, _ENGINE_GLOBALS, CODE_REFUSED, NAME_REFUSED

GOLDEN = json.loads((Path(__file__).parent / "golden" / "grounding_upstream.json").read_text(encoding="utf-8"))
HEADER, CASES = GOLDEN["header"], GOLDEN["cases"]
#: Exception texts are the interpreter's: they are compared on the Python upstream ran (3.11).
SAME_PYTHON = platform.python_version_tuple()[:2] == tuple(HEADER["python"].split(".")[:2])
REFUSALS = tuple(template.split("{")[0] for template in (CODE_REFUSED, NAME_REFUSED))
CONTEXTS = {
    name: ([Image.new("RGB", tuple(size)) for size in ctx["raw_sizes"]], [tuple(size) for size in ctx["used_sizes"]])
    for name, ctx in HEADER["contexts"].items()
}


def outcome(case):
    """What the kit does with one stored turn, in the golden's terms."""
    raws, used = CONTEXTS[case["context"]]
    result = parse_grounding(case["text"])
    if not isinstance(result, GroundingError):
        result = crop(result, raws, used, relative=case["relative"])
    if isinstance(result, (GroundingError, CropError)):
        return {"error_info": result.message}
    shown = resized_observation_size(result.image.size, HEADER["min_pixels"], HEADER["max_pixels"])
    return {"box": list(result.box), "source_index": result.source_index, "shown_size": list(shown)}


def expected(case):
    return {key: case[key] for key in ("error_info", "box", "source_index", "shown_size") if key in case}


@pytest.mark.parametrize("kind", sorted(HEADER["counts"]))
def test_every_stored_call_gets_upstreams_outcome(kind):
    cases = [c for c in CASES if c["kind"] == kind]
    assert len(cases) == HEADER["counts"][kind]
    wrong = []
    for case in cases:
        got, want = outcome(case), expected(case)
        if not SAME_PYTHON:  # another interpreter words its exceptions differently: compare the kind
            got, want = ({k: v if k != "error_info" else "error" for k, v in x.items()} for x in (got, want))
        refused = got.get("error_info", "").startswith(REFUSALS)
        if got != want and not (refused and case["class"] == "code"):
            wrong.append((case["text"][:120], want, got))
    assert not wrong, f"{len(wrong)} of {len(cases)} differ, e.g. {wrong[:3]}"


def test_the_kit_refuses_only_code_and_refuses_some():
    refused = [c for c in CASES if outcome(c).get("error_info", "").startswith(REFUSALS)]
    assert refused and all(c["class"] == "code" for c in refused)
    # Most code cases still get upstream's text: an operand fails first (a NameError, say).
    code = [c for c in CASES if c["class"] == "code"]
    assert len(refused) < len(code)


def test_stored_injections_are_the_prompt_sets_texts():
    """vllm_async_engine.py lines 534-570: the text appended after a tool call."""
    assert len(GOLDEN["injections"]) >= 100
    for stored in GOLDEN["injections"]:
        case = CASES[stored["case"]]
        got = outcome(case)
        if "error_info" in case:
            if SAME_PYTHON and not got["error_info"].startswith(REFUSALS):
                assert MINI_O3_V1.error_injection(got["error_info"]) == stored["injection"]
        else:
            assert MINI_O3_V1.observation_injection(case["turn"]) == stored["injection"]


def test_the_names_eval_resolves_are_upstreams():
    """Module globals of vllm_async_engine.py and process_tool_call's bound locals, as stored."""
    names = HEADER["names_resolved_by_eval"]
    assert _ENGINE_GLOBALS == set(names["module_globals"])
    assert _CALL_LOCALS == set(names["call_locals"])


@pytest.mark.slow
def test_no_observation_shows_a_memory_address():
    address = re.compile(r" at 0x[0-9a-f]+")
    for case in CASES:
        message = outcome(case).get("error_info", "")
        assert not address.search(message), (case["text"], message)
        lenient = parse_grounding(case["text"], "lenient")
        assert not address.search(getattr(lenient, "message", "")), (case["text"], lenient)


def test_the_golden_covers_every_message_class():
    messages = [c.get("error_info", "") for c in CASES]
    for needle in ("invalid syntax (<string>, line 1)", "name 'x0' is not defined",
                   "'NoneType' object has no attribute 'group'", "was never closed", "invalid decimal literal",
                   "unhashable type", "unsupported operand type(s) for *", "int() argument must be",
                   "invalid literal for int() with base 10", "cannot convert float infinity to integer",
                   "does not match the pattern", "Error in predicting the source observation",
                   "The bounding box is not valid", "exceeds 200"):
        assert any(needle in m for m in messages), needle
    assert messages.count("") > 50  # the bare ``assert`` on the bbox shape
    assert sum("box" in c for c in CASES) > 200
