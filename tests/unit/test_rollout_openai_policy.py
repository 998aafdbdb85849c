"""OpenAIChatPolicy pieces: config checks, seeds, stop re-append, request shape, errors."""

from __future__ import annotations


import pytest
from PIL import Image
from pydantic import ValidationError

from fixtures.scripted_server import ScriptedItem

from mini_o3.rollout.openai_policy import (
    OpenAIChatPolicy,
    OpenAIPolicyConfig,
    OpenAIPolicyError,
    close_open_grounding,
    request_seed,
)
from mini_o3.task import EVAL_LIMITS, EpisodeSample, run_episode

QUESTION = "What is written on the sign?"


def _sample(qid: str = "q") -> EpisodeSample:
    return EpisodeSample(f"<image>\n{QUESTION}", Image.new("RGB", (800, 600), (10, 200, 30)), qid)


def _policy(server, model: str, **kw) -> OpenAIChatPolicy:
    return OpenAIChatPolicy(OpenAIPolicyConfig(base_url=server.base_url, model=model, backoff_s=0.001, **kw))


def test_config_validation():
    with pytest.raises(ValidationError, match="media_root"):
        OpenAIPolicyConfig(image_transport="file_url")
    with pytest.raises(ValidationError):
        OpenAIPolicyConfig(top_p=0)
    with pytest.raises(ValidationError):
        OpenAIPolicyConfig(unknown=1)
    assert OpenAIPolicyConfig(api="azure").key_env == "API_KEY"
    assert OpenAIPolicyConfig().key_env == "OPENAI_API_KEY"


def test_azure_missing_env_is_named(monkeypatch):
    for name in ("END_POINT", "API_VERSION", "API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(OpenAIPolicyError, match="END_POINT"):
        OpenAIChatPolicy(OpenAIPolicyConfig(api="azure"))


def test_request_seed_deterministic_and_distinct():
    assert request_seed(0, "q", 1, 2) == request_seed(0, "q", 1, 2)
    seeds = {request_seed(0, q, s, t) for q in "ab" for s in range(4) for t in range(3)}
    assert len(seeds) == 24 and all(0 <= s < 2**31 for s in seeds)
    assert request_seed(1, "q", 1, 2) != request_seed(0, "q", 1, 2)


def test_close_open_grounding():
    assert close_open_grounding('<grounding>{"a": 1}') == '<grounding>{"a": 1}</grounding>'
    assert close_open_grounding("<grounding>x</grounding>") == "<grounding>x</grounding>"
    assert close_open_grounding("<answer>x</answer>") == "<answer>x</answer>"
    assert close_open_grounding("<grounding>x</grounding> <grounding>y") == "<grounding>x</grounding> <grounding>y</grounding>"


def test_every_request_carries_all_sampling_params(scripted_server):
    server = scripted_server(items={QUESTION: ScriptedItem(QUESTION, "STOP")})
    with _policy(server, "oracle", temperature=0.7, top_k=20, repetition_penalty=1.05, seed=3) as policy:
        traj = run_episode(policy.for_episode("q", 5), _sample(), EVAL_LIMITS)
    assert traj.termination == "answer" and traj.answer == "STOP"
    bodies = [r.body for r in server.chat_requests()]
    assert len(bodies) == 2
    for turn, body in enumerate(bodies):
        assert body["temperature"] == 0.7 and body["top_p"] == 1.0 and body["top_k"] == 20
        assert body["repetition_penalty"] == 1.05 and body["stop"] == ["</grounding>"]
        assert body["include_stop_str_in_output"] is True and body["n"] == 1
        assert body["seed"] == request_seed(3, "q", 5, turn)
        assert body["max_tokens"] == EVAL_LIMITS.max_tokens_per_turn
    # the original image is sent as the same bytes on both turns (prefix caching)
    first = next(p for p in bodies[0]["messages"][1]["content"] if p["type"] == "image_url")
    again = next(p for p in bodies[1]["messages"][1]["content"] if p["type"] == "image_url")
    assert first == again and first["image_url"]["url"].startswith("data:image/png;base64,")
    assert traj.turns[0].tokens == len(traj.turns[0].output) // 4  # usage.completion_tokens of the server


def test_greedy_sampling_is_sent_as_temperature_zero():
    policy = OpenAIChatPolicy(OpenAIPolicyConfig(do_sample=False, temperature=0.7, top_k=20), client=object())
    kwargs = policy.sampling_kwargs(64, ("</grounding>",), seed=1)
    assert (kwargs["temperature"], kwargs["top_p"], kwargs["extra_body"]["top_k"]) == (0.0, 1.0, -1)
    assert OpenAIPolicyConfig(temperature=0.7).sampling == OpenAIPolicyConfig(sampling={"temperature": 0.7}).sampling


def test_max_tokens_cap(scripted_server):
    server = scripted_server(items={QUESTION: ScriptedItem(QUESTION, "STOP")})
    with _policy(server, "no_zoom", max_tokens=64) as policy:
        run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    assert server.chat_requests()[0].body["max_tokens"] == 64


@pytest.mark.parametrize("openai_semantics", [False, True])
def test_stop_string_kept_or_reappended(scripted_server, openai_semantics):
    server = scripted_server(items={QUESTION: ScriptedItem(QUESTION, "STOP")}, openai_semantics=openai_semantics)
    with _policy(server, "oracle") as policy:
        traj = run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    assert traj.turns[0].output.endswith("</grounding>") and traj.turns[0].crop is not None
    assert traj.termination == "answer"


def test_file_url_transport(scripted_server, tmp_path):
    server = scripted_server(items={QUESTION: ScriptedItem(QUESTION, "STOP")})
    with _policy(server, "oracle", image_transport="file_url", media_root=str(tmp_path)) as policy:
        run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    urls = [p["image_url"]["url"] for r in server.chat_requests() for m in r.body["messages"] if m["role"] == "user"
            for p in m["content"] if p["type"] == "image_url"]
    assert len(urls) == 3 and all(u.startswith("file://") for u in urls)
    root = tmp_path.resolve().as_uri()
    assert all(u.startswith(root + "/.mini_o3_media/") for u in urls)
    assert len(list((tmp_path / ".mini_o3_media").glob("*.png"))) == 2


def test_non_retryable_error_names_endpoint(scripted_server):
    server = scripted_server()  # question unknown -> HTTP 400
    with _policy(server, "oracle") as policy, pytest.raises(OpenAIPolicyError, match=r"rejected by http://127\.0\.0\.1:\d+/v1 .*HTTP 400"):
        run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    assert len(server.chat_requests()) == 1  # not retried


def test_retries_are_bounded(scripted_server):
    server = scripted_server(items={QUESTION: ScriptedItem(QUESTION, "STOP")}, flaky_failures=100)
    with _policy(server, "flaky", max_retries=3) as policy:
        with pytest.raises(OpenAIPolicyError, match=r"after 4 attempts at http://127\.0\.0\.1:\d+/v1"):
            run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
        assert policy.stats["retries"] == 3 and policy.stats["failures"] == 1
    assert len(server.chat_requests()) == 4


def test_connection_refused_is_retried_then_named():
    config = OpenAIPolicyConfig(base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_s=0.001, connect_timeout_s=1)
    with OpenAIChatPolicy(config) as policy, pytest.raises(OpenAIPolicyError, match="127.0.0.1:9"):
        run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
