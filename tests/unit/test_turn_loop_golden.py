"""The synchronous turn loop (``run_episode``) still makes of each scripted policy exactly what
the recorded golden says: requests, trajectory, segments, images (tests/data/golden_turn_loop)."""

import json
from pathlib import Path

import pytest
from fixtures.golden import load_generator

GOLDEN = Path(__file__).parents[1] / "data" / "golden_turn_loop"
make_golden = load_generator(GOLDEN)
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
