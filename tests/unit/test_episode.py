"""run_episode: the one multi-turn loop — turns, observations, errors, limits, masks."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mini_o3.task import (
    ApproxTokenCounter,
    EVAL_LIMITS,
    MINI_O3_V1,
    TRAIN_LIMITS,
    EpisodeSample,
    PolicyOutput,
    RolloutLimits,
    answer_turn,
    run_episode,
    tool_turn,
)
from mini_o3.task.episode import INVALID_UTF8
from mini_o3.task.grounding import STRICT_NO_MATCH

IMAGE = Image.new("RGB", (2000, 1500), "white")
SAMPLE = EpisodeSample("<image>\nWhat is the code?", IMAGE, "q1")


def grounding(bbox, source="original_image"):
    return tool_turn("zoom", bbox, source)


ANSWER = answer_turn("I see it.", "K7Q")


def scripted(*outputs):
    it = iter(outputs)
    return lambda request: next(it)


def test_direct_answer_is_one_model_turn_ending_with_eos():
    traj = run_episode(scripted(ANSWER), SAMPLE)
    assert traj.termination == "answer" and traj.num_turns == 1 and traj.answer == "K7Q"
    assert [s.producer for s in traj.segments] == ["env", "model", "model"]
    assert traj.segments[0].text == MINI_O3_V1.initial_prompt(SAMPLE.problem)
    assert traj.segments[-1].text == "<|im_end|>"
    assert traj.images[0].size == (1632, 1224) and traj.raw_images[0] is IMAGE


def test_tool_turns_append_observations_and_keep_the_raw_crops():
    traj = run_episode(scripted(grounding([0.5, 0.5, 0.6, 0.6]), grounding([0.0, 0.0, 0.5, 0.5], "observation_1"), ANSWER), SAMPLE)
    assert traj.termination == "answer" and traj.num_turns == 3 and traj.num_crops == 2
    assert [t.crop.box for t in traj.turns[:2]] == [(1000, 750, 1200, 900), (0, 0, 100, 75)]
    assert [im.size for im in traj.raw_images] == [(2000, 1500), (200, 150), (100, 75)]
    assert traj.images[2].size == (230, 173)  # NEAREST upscale into min_pixels
    producers = [s.producer for s in traj.segments]
    assert producers == ["env", "model", "env", "model", "env", "model", "model"]
    assert [s.image for s in traj.segments if s.image is not None] == [0, 1, 2]
    assert traj.segments[2].text == MINI_O3_V1.observation_injection(0)
    assert traj.segments[4].text == MINI_O3_V1.observation_injection(1)
    assert traj.model_text() == "".join(traj.model_outputs) + "<|im_end|>"


def test_errors_become_observations_and_labels_follow_the_turn_index():
    bad = '<grounding>{"bbox_2d":[0.1,0.1,0.2,0.2],"source":"original_image"}</grounding>'
    traj = run_episode(scripted(bad, grounding([0.1, 0.1, 0.2, 0.2]), grounding([0, 0, 1, 1], "observation_2"), ANSWER), SAMPLE)
    assert traj.turns[0].error == STRICT_NO_MATCH
    assert traj.segments[2].text == MINI_O3_V1.error_injection(STRICT_NO_MATCH)
    # The first successful crop is labelled "Observation 2" (turn 1) but is observation_1.
    assert traj.segments[4].text == MINI_O3_V1.observation_injection(1)
    assert traj.turns[2].error == 'Error in predicting the source observation: "observation_2".'
    assert traj.termination == "answer" and traj.num_crops == 1


def test_lenient_parser_mode_accepts_other_spacing():
    bad = '<grounding>{"bbox_2d":[0.1,0.1,0.2,0.2],"source":"original_image"}</grounding>'
    traj = run_episode(scripted(bad, ANSWER), SAMPLE, parser="lenient")
    assert traj.turns[0].error is None and traj.num_crops == 1


@pytest.mark.parametrize(
    ("output", "finish"),
    [("<think>hmm</think> the code is K7Q", "stop"), ("<think>long", "length"), ("<answer>K7Q</answer> trailing", "stop")],
)
def test_void_answers(output, finish):
    traj = run_episode(scripted(PolicyOutput(output, finish_reason=finish)), SAMPLE)
    assert traj.termination == "void"
    assert (traj.segments[-1].text == "<|im_end|>") == (finish == "stop")


def test_exceed_on_the_last_allowed_turn():
    calls = [grounding([0.1, 0.1, 0.3, 0.3])] * 20
    traj = run_episode(scripted(*calls), SAMPLE, TRAIN_LIMITS)
    assert traj.termination == "exceed" and traj.exceed_reason == "turns"
    assert traj.num_turns == 6 and traj.num_crops == 5
    assert traj.answer is None
    traj = run_episode(scripted(*calls), SAMPLE, EVAL_LIMITS)
    assert traj.num_turns == 12 and traj.num_crops == 11


def test_exceed_when_the_image_budget_is_spent():
    limits = RolloutLimits(max_turns=12, max_images=3)
    traj = run_episode(scripted(*[grounding([0.1, 0.1, 0.3, 0.3])] * 12), SAMPLE, limits)
    assert traj.exceed_reason == "images" and traj.num_turns == 3 and len(traj.images) == 3


def test_exceed_when_an_observation_would_overflow_the_context():
    counter = ApproxTokenCounter()
    call = grounding([0.1, 0.1, 0.3, 0.3])
    prompt = MINI_O3_V1.initial_prompt(SAMPLE.problem)
    after_call = counter.text(prompt) + counter.image((1632, 1224)) - 1 + counter.text(call)
    limits = RolloutLimits(max_context=after_call + 50, context_margin=40)  # the call fits, its observation not
    traj = run_episode(scripted(call, ANSWER), SAMPLE, limits, counter=counter)
    assert traj.termination == "exceed" and traj.exceed_reason == "context"
    assert traj.context_tokens == after_call
    assert traj.num_crops == 0 and traj.segments[-1].producer == "model"  # observation undone
    roomy = RolloutLimits(max_context=after_call + 2000, context_margin=40)
    assert run_episode(scripted(call, ANSWER), SAMPLE, roomy).termination == "answer"


def test_policy_sees_the_budget_and_the_trajectory_so_far():
    seen = []

    def policy(request):
        seen.append((request.turn, request.max_tokens, len(request.trajectory.images), request.stop))
        return grounding([0.2, 0.2, 0.4, 0.4]) if request.turn == 0 else ANSWER

    run_episode(policy, SAMPLE)
    assert [s[0] for s in seen] == [0, 1] and seen[0][1] == 8192
    assert [s[2] for s in seen] == [1, 2] and seen[0][3] == ("</grounding>",)


def test_output_after_the_stop_string_is_cut():
    traj = run_episode(scripted(grounding([0.1, 0.1, 0.3, 0.3]) + " and more <answer>x</answer>", ANSWER), SAMPLE)
    assert traj.turns[0].output.endswith("</grounding>") and traj.answer == "K7Q"


@pytest.mark.parametrize("raw", [b"\xff\xfe<grounding>oops</grounding>", "caf\udce9 <answer>x</answer>", b"<answer>\xc3(</answer>"])
def test_non_utf8_output_is_an_error_observation(raw):
    traj = run_episode(scripted(raw, ANSWER), SAMPLE)
    assert traj.turns[0].error == INVALID_UTF8
    assert traj.turns[0].output.encode("utf-8")  # stored text is valid UTF-8
    assert traj.termination == "answer"


@pytest.mark.parametrize(
    "bbox",
    [[math.nan, 0, 1, 1], [-1, -1, -0.5, -0.5], [0.9, 0.9, 0.1, 0.1], [0, 0, 1e300, 1e300], [5, 5, 6, 6]],
)
def test_bad_boxes_never_crash(bbox):
    text = grounding(bbox).replace("nan", "NaN")
    traj = run_episode(scripted(text, ANSWER), SAMPLE)
    assert traj.termination == "answer"
    assert traj.turns[0].error is not None or traj.turns[0].crop is not None


def test_bad_samples_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="must contain '<image>'"):
        run_episode(scripted(ANSWER), EpisodeSample("no image here", IMAGE, "x"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        run_episode(scripted(ANSWER), EpisodeSample("<image>\nq", tmp_path / "bad.png", "x"))
    with pytest.raises(ValueError, match="finish_reason"):
        run_episode(scripted(PolicyOutput("x", finish_reason="eos")), SAMPLE)


def test_chat_and_sharegpt_views_match_the_protocol():
    traj = run_episode(scripted(grounding([0.5, 0.5, 0.6, 0.6]), "<grounding>bad</grounding>", ANSWER), SAMPLE)
    messages = traj.to_chat_messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == [{"type": "image", "image": 0}, {"type": "text", "text": "\nWhat is the code?"}]
    assert [p["type"] for p in messages[3]["content"]] == ["text", "image", "text"]
    assert messages[5]["content"][0]["text"] == MINI_O3_V1.error_text(STRICT_NO_MATCH)
    conv = traj.to_sharegpt()
    assert [c["from"] for c in conv] == ["system", "human", "gpt", "human", "gpt", "human", "gpt"]
    assert sum(c["value"].count("<image>") for c in conv) == len(traj.images) == 2


def test_limits_validate():
    with pytest.raises(ValueError, match="max_turns must be >= 1"):
        RolloutLimits(max_turns=0)
    with pytest.raises(ValueError, match="max_pixels"):
        RolloutLimits(min_pixels=10, max_pixels=5)
    assert TRAIN_LIMITS.context_cap == 30768 and EVAL_LIMITS.max_turns == 12


turn_outputs = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=40),
    st.builds(grounding, st.lists(st.one_of(st.floats(-1, 2), st.integers(-5, 5)), min_size=4, max_size=4),
              st.sampled_from(["original_image", "observation_1", "observation_3", "obs"])),
    st.just(ANSWER),
    st.builds(PolicyOutput, st.text(max_size=40), st.sampled_from(["stop", "length"])),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(turn_outputs, min_size=12, max_size=12), st.integers(1, 12), st.integers(1, 12))
def test_any_policy_output_ends_in_a_well_formed_trajectory(outputs, max_turns, max_images):
    limits = RolloutLimits(max_turns=max_turns, max_images=max_images)
    traj = run_episode(scripted(*outputs), EpisodeSample("<image>\nq", Image.new("RGB", (400, 300)), "f"), limits)
    assert traj.termination in ("answer", "exceed", "void")
    assert 1 <= traj.num_turns <= max_turns and len(traj.images) <= max_images
    assert len(traj.images) == len(traj.raw_images) == traj.num_crops + 1
    assert traj.token_stream().encode("utf-8")
    env = [s.text for s in traj.segments if s.producer == "env"][1:]
    assert all(text.startswith("<|im_end|>\n<|im_start|>user\n") for text in env)


def test_reported_token_ids_travel_with_model_segments():
    call = grounding([0.1, 0.1, 0.3, 0.3])
    outputs = [PolicyOutput(call, token_ids=(1, 2, 3)), PolicyOutput(ANSWER, token_ids=(4, 5, 151645))]
    traj = run_episode(scripted(*outputs), SAMPLE)
    model = [s for s in traj.segments if s.producer == "model"]
    assert [s.token_ids for s in model] == [(1, 2, 3), (4, 5, 151645)]
    assert model[-1].text == ANSWER + "<|im_end|>" and traj.turns[1].token_ids == (4, 5, 151645)
    # Text after the stop string is cut, so the ids no longer match it: they are dropped.
    cut = run_episode(scripted(PolicyOutput(call + " more", token_ids=(1, 2, 3, 4)), ANSWER), SAMPLE)
    assert cut.segments[1].token_ids is None and cut.turns[0].token_ids is None


def test_used_tool_counts_calls_that_were_never_executed():
    calls = [grounding([0.1, 0.1, 0.3, 0.3])] * 2
    traj = run_episode(scripted(*calls), SAMPLE, RolloutLimits(max_turns=1))
    assert traj.termination == "exceed" and traj.num_crops == 0 and traj.used_tool
    assert not run_episode(scripted(ANSWER), SAMPLE).used_tool


def test_a_file_original_is_loaded_and_resized_once_per_content(tmp_path):
    path = tmp_path / "q.png"
    Image.new("RGB", (3000, 2000), "red").save(path)
    sample = EpisodeSample("<image>\nq", path, "f")
    a, b = run_episode(scripted(ANSWER), sample), run_episode(scripted(ANSWER), sample)
    assert a.images[0] is b.images[0] and a.images[0].size == (1732, 1154)
    Image.new("RGB", (800, 600), "blue").save(path)  # a changed file is read again
    c = run_episode(scripted(ANSWER), sample)
    assert c.raw_images[0].size == (800, 600) and c.images[0].getpixel((0, 0)) == (0, 0, 255)
    other = run_episode(scripted(ANSWER), sample, RolloutLimits(max_pixels=100_000))
    assert other.images[0].size != c.images[0].size  # pixel bounds are part of the key
