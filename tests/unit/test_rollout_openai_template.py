"""The text the served chat template renders for the policy's messages equals the reference
token stream at every turn (crop, error and answer turns). No difference is allowed: the
``<|im_end|>`` closing an assistant tool turn is the one the injected user segment starts with."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mini_o3.rollout.openai_policy import OpenAIChatPolicy, OpenAIPolicyConfig
from mini_o3.task import EVAL_LIMITS, EpisodeSample, PolicyRequest, answer_turn, run_episode, tool_turn
from mini_o3.tiny import build_tiny_tokenizer

OUTPUTS = [
    tool_turn("zoom", [0.1, 0.1, 0.5, 0.5]),
    '<think>bad</think>\n<grounding>{"bbox_2d": [0.1,</grounding>',
    tool_turn("again", [0.2, 0.2, 0.8, 0.8], "observation_1"),
    answer_turn("done", "red"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.mark.slow
def test_rendered_chat_equals_token_stream(tokenizer):
    policy = OpenAIChatPolicy(OpenAIPolicyConfig(), client=object())
    episode = policy.for_episode("q1", 0)
    checked: list[int] = []

    def scripted(request: PolicyRequest) -> str:
        messages = episode.messages(request)
        assert all(isinstance(m["content"], str) for m in messages if m["role"] != "user")
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert rendered == request.trajectory.token_stream(), f"turn {request.turn}"
        n_images = sum(p["type"] == "image_url" for m in messages if m["role"] == "user" for p in m["content"])
        assert n_images == len(request.trajectory.images)
        checked.append(request.turn)
        return OUTPUTS[request.turn]

    image = Image.new("RGB", (640, 480), (90, 120, 200))
    traj = run_episode(scripted, EpisodeSample("<image>\nWhat colour is the dot?", image, "q1"), EVAL_LIMITS)
    assert checked == [0, 1, 2, 3] and traj.termination == "answer"
    assert traj.turns[1].error is not None and traj.num_crops == 2
    # the first user message is [image, "\n" + question]; observations are [text, image, text]
    messages = episode.messages(PolicyRequest(traj, 4, 10))
    assert [p["type"] for p in messages[1]["content"]] == ["image_url", "text"]
    assert messages[1]["content"][1]["text"] == "\nWhat colour is the dot?"
    assert [p["type"] for p in messages[3]["content"]] == ["text", "image_url", "text"]
    assert [p["type"] for p in messages[5]["content"]] == ["text"]
    json.dumps(messages)  # serialisable as a request body
