"""The synchronous turn loop (``run_episode``) still makes of each scripted policy exactly what
the recorded golden says: requests, trajectory, segments, images; the batched rollout its
batches and trajectories (tests/data/golden_turn_loop)."""

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


def test_the_batched_rollout_matches():
    """Same batches (composition, order, budgets) and trajectories as the threaded batcher gave."""
    built = make_golden.build_batched()
    stored = json.loads((GOLDEN / "batched.json").read_text(encoding="utf-8"))
    assert built["runs"]["all"]["batches"] == stored["runs"]["all"]["batches"]
    assert built["runs"]["all"]["trajectories"] == stored["runs"]["all"]["trajectories"]
    assert built["runs"]["missing_image"] == stored["runs"]["missing_image"]
    assert make_golden.render(built) == (GOLDEN / "batched.json").read_text(encoding="utf-8")
