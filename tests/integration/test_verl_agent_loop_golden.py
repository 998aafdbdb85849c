"""verl's agent loop still makes of each scripted server exactly what the recorded golden says:
generate calls, prompt / response ids, masks, log-probs, images, turns and extra fields
(tests/data/golden_turn_loop; the real tiny processor, verl's own AgentLoopBase)."""

import json
from pathlib import Path

import pytest
from fixtures.golden import load_generator
from transformers import AutoProcessor

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parents[1] / "data" / "golden_turn_loop"
STORED = json.loads((GOLDEN / "agent_loop.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def built(tiny_dir):
    return load_generator(GOLDEN).build_agent_loop(AutoProcessor.from_pretrained(str(tiny_dir)))


@pytest.mark.parametrize("name", sorted(STORED["cases"]))
def test_each_agent_loop_episode_matches(built, name):
    assert json.loads(json.dumps(built["cases"][name])) == STORED["cases"][name]


def test_the_file_is_identical(built):
    assert load_generator(GOLDEN).render(built) == (GOLDEN / "agent_loop.json").read_text(encoding="utf-8")
