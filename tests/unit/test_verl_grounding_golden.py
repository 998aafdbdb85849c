"""The verl plug-ins give upstream's tool-call outcome on every golden case: the
``minio3_grounding`` parser and ``CropTool`` run the task kit and hand over through JSON without
changing an item. Upstream rule: Mini-o3 @ 8654dbf vllm_async_engine.py ``process_tool_call``
(lines 520-582) and function_tools.py ``prepare_grounding_inputs_multi_turn`` (lines 29-74); cases
in tests/unit/golden/grounding_upstream.json (see test_golden_grounding.py)."""

import asyncio
import json
import platform
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from mini_o3.rl.verl.parser import grounding_call
from mini_o3.rl.verl.tool import CropTool
from mini_o3.task.literal import CODE_REFUSED, NAME_REFUSED

GOLDEN = json.loads((Path(__file__).parent / "golden" / "grounding_upstream.json").read_text(encoding="utf-8"))
HEADER, CASES = GOLDEN["header"], GOLDEN["cases"]
CONTEXTS = {
    name: ([Image.new("RGB", tuple(size)) for size in ctx["raw_sizes"]], [tuple(size) for size in ctx["used_sizes"]])
    for name, ctx in HEADER["contexts"].items()
}


def _verl(case, tools):
    raws, used = CONTEXTS[case["context"]]
    state = SimpleNamespace(raw_images=raws, image_data=[Image.new("RGB", size) for size in used])
    arguments = json.loads(grounding_call(case["text"]).arguments)
    response, _, info = asyncio.run(tools[case["relative"]].execute("id", arguments, agent_data=state))
    return {"box": list(info["box"]), "source_index": info["source_index"]} if response.image else {"error_info": response.text}


@pytest.mark.slow
def test_the_verl_parser_and_tool_give_upstreams_outcome_on_every_golden_call():
    bounds = {"min_pixels": HEADER["min_pixels"], "max_pixels": HEADER["max_pixels"]}
    tools = {rel: CropTool({**bounds, "relative_coordinates": rel}) for rel in (True, False)}
    same_python = platform.python_version_tuple()[:2] == tuple(HEADER["python"].split(".")[:2])
    refusals = tuple(template.split("{")[0] for template in (CODE_REFUSED, NAME_REFUSED))
    wrong = []
    for case in CASES:
        got = _verl(case, tools)
        want = {key: case[key] for key in ("error_info", "box", "source_index") if key in case}
        if not same_python:
            got, want = ({k: v if k != "error_info" else "error" for k, v in x.items()} for x in (got, want))
        if got != want and not (case["class"] == "code" and got.get("error_info", "").startswith(refusals)):
            wrong.append((case["text"][:100], want, got))
    assert not wrong, f"{len(wrong)} of {len(CASES)} differ, e.g. {wrong[:3]}"


def test_items_json_would_change_travel_as_the_turn_text():
    text = '<grounding>{"bbox_2d": [(1,), 0, 1, 1], "source": "original_image"}</grounding>'
    assert json.loads(grounding_call(text).arguments) == {"text": text, "parser": "strict"}
    raw = Image.new("RGB", (100, 80))
    response, _, _ = asyncio.run(CropTool({}).execute("id", {"text": text}, agent_data=SimpleNamespace(raw_images=[raw], image_data=[raw])))
    assert response.text == "int() argument must be a string, a bytes-like object or a real number, not 'tuple'"
