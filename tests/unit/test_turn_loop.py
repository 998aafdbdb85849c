"""The turn-loop core's transitions on their own (``mini_o3.task.turn_loop``): budgets, the order
of the stop rules, the undo of an observation past the cap, the row rule of the loss mask."""

import pytest
from PIL import Image

from mini_o3.task import MINI_O3_V1, TRAIN_LIMITS, GroundingError
from mini_o3.task.turn_loop import EpisodeState, Observation, Stop, cut_at_tool_stop, row_trains

CALL = '<grounding>{"bbox_2d": [0.0, 0.0, 0.5, 0.5], "source": "original_image"}</grounding>'


def state(context=100, **limits):
    raw = Image.new("RGB", (640, 480), "white")
    return EpisodeState(TRAIN_LIMITS.with_(**limits), MINI_O3_V1, [raw], [raw], context)


def test_budget_is_the_turn_cap_or_what_the_context_has_left():
    assert state(100).budget() == 8192
    assert state(30_000).budget() == 2768
    assert state(40_000).budget() == 1


def test_answer_void_and_the_exceed_rules_in_order():
    assert state().model_turn("<answer>a</answer>", "stop", 5, tool_call=False) == Stop("answer")
    assert state().model_turn("<answer>a</answer>", "length", 5, tool_call=False) == Stop("void")
    assert state().model_turn("<answer>a</answer> x", "stop", 5, tool_call=False) == Stop("void")
    # images before turns before context
    s = state(30_760, max_images=1, max_turns=1)
    assert s.model_turn(CALL, "stop", 10, tool_call=True) == Stop("exceed", "images")
    assert state(30_760, max_turns=1).model_turn(CALL, "stop", 10, tool_call=True) == Stop("exceed", "turns")
    assert state(30_760).model_turn(CALL, "stop", 10, tool_call=True) == Stop("exceed", "context")
    assert state(30_758).model_turn(CALL, "stop", 10, tool_call=True) == Stop("exceed", "context")
    assert state(30_757).model_turn(CALL, "stop", 10, tool_call=True) is None


def test_a_crop_is_observed_and_an_observation_past_the_cap_is_undone():
    s = state()
    assert s.model_turn(CALL, "stop", 20, tool_call=True) is None
    call, result = s.run_tool(CALL)
    assert call.source == "original_image" and result.box == (0, 0, 320, 240)
    obs = s.observation(result)
    assert obs.text == MINI_O3_V1.observation_injection(0) and obs.image.size[0] * obs.image.size[1] >= 40_000
    assert s.observe(obs, 300) is None
    assert (s.turn, s.context_tokens, len(s.images), len(s.raw_images)) == (1, 420, 2, 2)
    assert s.raw_images[1].size == (320, 240)
    assert s.model_turn(CALL, "stop", 20, tool_call=True) is None
    assert s.observe(s.observation(s.run_tool(CALL)[1]), 30_768 - 440) == Stop("exceed", "context")
    assert (s.turn, s.context_tokens, len(s.images), s.termination) == (1, 440, 2, "exceed")
    with pytest.raises(RuntimeError, match="has ended"):
        s.model_turn(CALL, "stop", 1, tool_call=True)


def test_an_error_becomes_the_error_injection_without_an_image():
    s = state()
    s.model_turn("<grounding>{}</grounding>", "stop", 5, tool_call=True)
    call, result = s.run_tool("<grounding>{}</grounding>")
    assert call is None and isinstance(result, GroundingError)
    obs = s.observation(result)
    assert obs == Observation(MINI_O3_V1.error_injection(result.message), error=result.message)
    assert s.observe(obs, 10) is None and len(s.images) == 1 and s.turn == 1


def test_cut_at_tool_stop_and_the_row_rule():
    assert cut_at_tool_stop(CALL + " more") == (CALL, True)
    assert cut_at_tool_stop(CALL) == (CALL, False) and cut_at_tool_stop("x") == ("x", False)
    assert not row_trains("exceed") and row_trains("exceed", ignore_exceed=False)
    assert row_trains("void") and not row_trains("void", ignore_void=True) and row_trains("answer", ignore_void=True)
