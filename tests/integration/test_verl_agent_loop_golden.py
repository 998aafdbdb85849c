"""verl's agent loop still makes of each scripted server exactly what the recorded golden says:
generate calls, prompt / response ids, masks, log-probs, images, turns and extra fields
(tests/data/golden_turn_loop; the real tiny processor, verl's own AgentLoopBase)."""

import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoProcessor

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parents[1] / "data" / "golden_turn_loop"
STORED = json.loads((GOLDEN / "agent_loop.json").read_text(encoding="utf-8"))


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_golden_turn_loop", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tiny_dir):
    return _load_generator().build_agent_loop(AutoProcessor.from_pretrained(str(tiny_dir)))


@pytest.mark.parametrize("name", sorted(STORED["cases"]))
def test_each_agent_loop_episode_matches(built, name):
    assert json.loads(json.dumps(built["cases"][name])) == STORED["cases"][name]


def test_the_file_is_identical(built):
    assert _load_generator().render(built) == (GOLDEN / "agent_loop.json").read_text(encoding="utf-8")
