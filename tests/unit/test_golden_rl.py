"""Golden RL fixtures: the scripted episodes still give the stored segments, masks, rewards,
advantages and group flags (tests/data/golden_rl/README.md)."""

import json
import math
from pathlib import Path

import pytest
from fixtures.golden import load_generator, unrle

GOLDEN = Path(__file__).parents[1] / "data" / "golden_rl"
make_golden = load_generator(GOLDEN)
BUILT = make_golden.build()
STORED = {name: json.loads((GOLDEN / name).read_text(encoding="utf-8")) for name in make_golden.FILES}
TRAJECTORIES = STORED["trajectories.json"]["trajectories"]
GROUPS = STORED["groups.json"]["groups"]


@pytest.mark.parametrize("name", sorted(make_golden.FILES))
def test_regenerated_files_are_identical(name):
    assert make_golden.render(BUILT)[name] == (GOLDEN / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(TRAJECTORIES))
def test_each_trajectory_matches(name):
    assert BUILT["trajectories"][name] == TRAJECTORIES[name]


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_each_group_matches(name):
    assert BUILT["groups"][name] == GROUPS[name]


def test_the_fixtures_cover_every_ending():
    endings = {(t["termination"], t["exceed_reason"]) for t in TRAJECTORIES.values()}
    assert endings == {("answer", None), ("void", None), ("exceed", "turns"), ("exceed", "context")}
    errors = [s for s in TRAJECTORIES["error_turn"]["segments"] if s["text"].startswith("<|im_end|>\n<|im_start|>user\nERROR")]
    assert len(errors) == 1 and errors[0]["image"] is None


UNCLOSED_LAST_TURN = {"exceed_turns", "exceed_context", "length_cut_answer", "length_cut_after_answer", "length_cut_first_turn"}


def test_masks_follow_the_producer_the_row_flags_and_the_last_im_end():
    for name, traj in TRAJECTORIES.items():
        model = [i for i, s in enumerate(traj["segments"]) if s["producer"] == "model"]
        for i, segment in enumerate(traj["segments"]):
            flags = segment["trainable"]
            if segment["producer"] == "env" or (name in UNCLOSED_LAST_TURN and i == model[-1]):
                assert not any(flags.values()), (name, i)  # no <|im_end|> after it: attention 0
            else:
                assert flags["ignore_exceed=False"]
                assert flags["ignore_exceed=True"] == (traj["termination"] != "exceed")
                assert flags["ignore_exceed=True,ignore_void=True"] == (traj["termination"] == "answer")
    # The context exceed undid its observation: the last segment is the model's call.
    assert [s["producer"] for s in TRAJECTORIES["exceed_context"]["segments"]] == ["env", "model"]
    assert TRAJECTORIES["exceed_context"]["context_tokens"] < STORED["trajectories.json"]["sample"]["limits"]["max_context"] - 2000


def test_void_answer_is_rewarded_and_trained_by_default():
    void = TRAJECTORIES["void_answer"]
    assert void["reward"]["score"] == 1.0 and void["segments"][-2]["trainable"]["ignore_exceed=True"]


def test_a_length_cut_right_answer_is_rewarded_but_its_turn_not_trained():
    cut = TRAJECTORIES["length_cut_after_answer"]
    assert cut["termination"] == "void" and cut["reward"]["score"] == 1.0
    assert [s["trainable"]["ignore_exceed=True"] for s in cut["segments"]] == [False, True, False, False]
    assert GROUPS["length_cut"]["rewards"] == [1.0, 0.0, 1.0, 0.0]


# Upstream's loss masks (upstream_masks.json, run from Mini-o3/Mini-o3 @8654dbf) for the same scenarios.
UPSTREAM = json.loads((GOLDEN / "upstream_masks.json").read_text(encoding="utf-8"))
SAME_SCENARIO = {name for name in TRAJECTORIES if name in UPSTREAM["cases"]}
SETTING = {"recipe": "ignore_exceed=True", "keep_exceed": "ignore_exceed=False", "ignore_void": "ignore_exceed=True,ignore_void=True"}


def _upstream_turn_flags(case, setting):
    """Per generated turn (run of multi_turn_response_mask == 1): is it in the loss? (all or none)."""
    generated, loss = unrle(case["upstream"]["multi_turn_response_mask"]), unrle(case["upstream"]["loss_mask"][setting])
    turns, start = [], None
    for i, g in enumerate(generated + [0]):
        if g and start is None:
            start = i
        elif not g and start is not None:
            values = set(loss[start:i])
            assert len(values) == 1, (start, i, values)
            turns.append(bool(values.pop()))
            start = None
    return turns


def _kit_turn_flags(traj, setting):
    """Per turn: consecutive model segments (a text-only answer's EOS is its own segment) form one turn."""
    turns, previous = [], None
    for segment in traj["segments"]:
        if segment["producer"] == "model":
            if previous == "model":
                assert turns[-1] == segment["trainable"][setting]
            else:
                turns.append(segment["trainable"][setting])
        previous = segment["producer"]
    return turns


def test_the_shared_scenarios_cover_length_cuts():
    assert {"length_cut_answer", "length_cut_after_answer", "length_cut_first_turn", "exceed_turns", "void_answer"} <= SAME_SCENARIO


@pytest.mark.parametrize("name", sorted(SAME_SCENARIO))
def test_segment_flags_are_upstreams_per_turn(name):
    """trainable_segments gives, turn by turn, what upstream's loss mask does: attention (through the
    last <|im_end|>, get_final_eos_mask, torch_functional.py:171-198) x multi_turn_response_mask,
    rows zeroed per ignore_exceed / ignore_void (dp_actor.py:304-330 @8654dbf)."""
    case, traj = UPSTREAM["cases"][name], TRAJECTORIES[name]
    assert (traj["termination"] == "exceed", traj["termination"] == "void") == (case["upstream"]["exceed"], case["upstream"]["void"])
    for setting, ours in SETTING.items():
        assert _kit_turn_flags(traj, ours) == _upstream_turn_flags(case, setting), setting


# Hand-computed group numbers (eps = 1e-6).
S3 = math.sqrt(1 / 3)  # std of {1, 0, 0, 1} (n-1) and of {1, 0, 1}


@pytest.mark.parametrize(
    ("group", "code", "paper"),
    [
        # mean .5, std sqrt(1/3): ±.5/.57735 = ±.86603; paper over {1, 0, 1}: mean 2/3, std sqrt(1/3).
        ("mixed", [0.5 / S3, -0.5 / S3, -0.5 / S3, 0.5 / S3], [(1 / 3) / S3, -(2 / 3) / S3, 0.0, (1 / 3) / S3]),
        # code {1,0,0,0}: mean .25, std .5 -> 1.5, -.5; paper {1, 0}: mean .5, std sqrt(.5).
        ("one_right_two_exceed", [1.5, -0.5, -0.5, -0.5], [0.5 / math.sqrt(0.5), 0.0, 0.0, -0.5 / math.sqrt(0.5)]),
        # paper: completed {1, 1} has std 0 -> (1 - 1) / eps = 0.
        ("completed_all_right", [-0.5 / S3, -0.5 / S3, 0.5 / S3, 0.5 / S3], [0.0] * 4),
        # paper: one completed member -> mean 0, std 1 -> 1 / (1 + eps).
        ("one_completed", [-0.5 / math.sqrt(0.5), 0.5 / math.sqrt(0.5)], [0.0, 1.0]),
        ("singleton", [1.0], [1.0]),
    ],
)
def test_group_advantages_by_hand(group, code, paper):
    assert GROUPS[group]["advantages"]["code"] == pytest.approx(code, abs=1e-5)
    assert GROUPS[group]["advantages"]["paper"] == pytest.approx(paper, abs=1e-5)


@pytest.mark.parametrize(
    ("group", "code", "paper"),
    [
        ("mixed", True, True),
        ("all_wrong", False, False),
        ("all_exceed", False, False),
        ("completed_all_right", True, False),
        ("judge_failed", False, False),
        ("singleton", True, True),
        ("one_completed", True, True),
    ],
)
def test_group_keep_flags_by_hand(group, code, paper):
    assert set(GROUPS[group]["valid"]["code"]) == {code}
    assert set(GROUPS[group]["valid"]["paper"]) == {paper}
