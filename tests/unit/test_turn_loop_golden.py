"""The synchronous turn loop (``run_episode``) still makes of each scripted policy exactly what
the recorded golden says: requests, trajectory, segments, images (tests/data/golden_turn_loop)."""

import importlib.util
import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parents[1] / "data" / "golden_turn_loop"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_golden_turn_loop", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = _load_generator()
BUILT = make_golden.build_episode()
STORED = json.loads((GOLDEN / "episode.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(STORED["cases"]))
def test_each_episode_matches(name):
    assert BUILT["cases"][name] == STORED["cases"][name]


def test_the_file_is_identical():
    assert make_golden.render(BUILT) == (GOLDEN / "episode.json").read_text(encoding="utf-8")


def test_the_cases_cover_every_ending():
    endings = {(c["summary"]["termination"], c["summary"]["exceed_reason"]) for c in STORED["cases"].values()}
    assert endings == {("answer", None), ("void", None), ("exceed", "turns"), ("exceed", "images"), ("exceed", "context")}
