"""OpenAIChatPolicy against the fault server: Retry-After honoured, malformed 200 responses
retried and named, permanent rejections classified, runaway replies cut as a length cut."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from fixtures.fault_server import Fault, fault_server_fixture  # noqa: F401 (registers `fault_server`)
from fixtures.scripted_server import ScriptedItem

from mini_o3.rollout.openai_policy import OpenAIChatPolicy, OpenAIPolicyConfig, OpenAIPolicyError
from mini_o3.task import EVAL_LIMITS, EpisodeSample, run_episode

QUESTION = "What is written on the sign?"
ITEMS = {QUESTION: ScriptedItem(QUESTION, "STOP")}


def _sample() -> EpisodeSample:
    return EpisodeSample(f"<image>\n{QUESTION}", Image.new("RGB", (320, 240), (10, 200, 30)), "q")


def _policy(server, model: str = "no_zoom", **kw) -> OpenAIChatPolicy:
    kw.setdefault("max_retries", 2)
    return OpenAIChatPolicy(OpenAIPolicyConfig(base_url=server.base_url, model=model, backoff_s=0.0, **kw))


def test_retry_after_is_honoured(fault_server):
    server = fault_server(items=ITEMS, faults=[Fault("retry_after", times=1, retry_after=1.0)])
    with _policy(server) as policy:
        began = time.monotonic()
        traj = run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
        waited = time.monotonic() - began
    assert traj.answer == "STOP" and policy.stats["retries"] == 1
    assert waited >= 1.0  # backoff_s is 0: only the server's Retry-After made it wait


def test_retry_after_is_capped(fault_server):
    server = fault_server(items=ITEMS, faults=[Fault("retry_after", times=1, retry_after=3600)])
    with _policy(server, retry_after_max_s=0.2) as policy:
        began = time.monotonic()
        run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    assert time.monotonic() - began < 5


@pytest.mark.parametrize("kind", ["non_json", "truncated", "no_choices"])
def test_malformed_responses_are_retried(fault_server, kind):
    server = fault_server(items=ITEMS, faults=[Fault(kind, times=2)])
    with _policy(server) as policy:
        traj = run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    assert traj.answer == "STOP" and policy.stats["retries"] == 2 and len(server.fault_log) == 2


@pytest.mark.parametrize("kind", ["non_json", "truncated", "no_choices"])
def test_malformed_responses_fail_naming_the_endpoint(fault_server, kind):
    server = fault_server(items=ITEMS, faults=[Fault(kind)])
    with _policy(server) as policy, pytest.raises(OpenAIPolicyError) as info:
        run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    message = str(info.value)
    assert info.value.kind == "bad_response" and server.base_url in message and "after 3 attempts" in message
    assert "has no attribute" not in message and len(server.chat_requests()) == 3


def test_context_length_rejection_is_permanent_and_classified(fault_server):
    server = fault_server(items=ITEMS, faults=[Fault("http_400")])
    with _policy(server) as policy, pytest.raises(OpenAIPolicyError, match="maximum context length") as info:
        run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    assert info.value.kind == "http_400" and len(server.chat_requests()) == 1


def test_endpoint_credentials_never_in_errors(fault_server):
    server = fault_server(items=ITEMS, faults=[Fault("http_400")])
    url = server.base_url.replace("http://", "http://user:PLANTED-KEY-123@")
    policy = OpenAIChatPolicy(OpenAIPolicyConfig(base_url=url, model="no_zoom", max_retries=0))
    with policy, pytest.raises(OpenAIPolicyError) as info:
        run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    assert "PLANTED-KEY-123" not in str(info.value) and "user:***@127.0.0.1" in str(info.value)


def test_runaway_reply_is_cut_as_a_length_cut(fault_server):
    """A server that ignores max_tokens: an 8 MB reply is cut to the turn budget and flagged
    length (protocol: a length-cut answer turn ends the episode void)."""
    server = fault_server(items=ITEMS, faults=[Fault("huge", size=8_000_000)])
    with _policy(server) as policy:
        traj = run_episode(policy.for_episode("q", 0), _sample(), EVAL_LIMITS)
    turn = traj.turns[0]
    assert turn.finish_reason == "length" and turn.tokens == EVAL_LIMITS.max_tokens_per_turn
    assert len(turn.output) <= 8_000_000 * EVAL_LIMITS.max_tokens_per_turn // 2_000_000 and traj.termination == "void"


def test_bound_reply_without_usage():
    from mini_o3.rollout.openai_policy import bound_reply

    text, tokens, cut = bound_reply("y" * 10_000, None, 10)
    assert cut and tokens == 10 and len(text) == 160
    assert bound_reply("short", 3, 10) == ("short", 3, False)


# -- the judge client ---------------------------------------------------------------------------


def _judge(server, **kw):
    from mini_o3.judge.client import Judge
    from mini_o3.judge.config import JudgeConfig

    kw.setdefault("max_attempts", 2)
    return Judge(JudgeConfig(api="openai", base_url=server.base_url, model="judge", retry_sleep_s=0.0,
                                 rate_limit_sleep_s=0.0, **kw))


def test_judge_honours_retry_after(fault_server):
    server = fault_server(items=ITEMS, faults=[Fault("retry_after", mode="judge", times=1, retry_after=1.0)])
    judge = _judge(server)
    began = time.monotonic()
    result = judge(QUESTION, "STOP", "STOP")
    assert result.score == 1.0 and not result.failed and time.monotonic() - began >= 1.0


@pytest.mark.parametrize("kind", ["non_json", "truncated", "no_choices"])
def test_judge_bad_response_is_a_retried_failure_naming_the_endpoint(fault_server, kind):
    server = fault_server(items=ITEMS, faults=[Fault(kind, mode="judge")])
    result = _judge(server)(QUESTION, "STOP", "STOP")
    assert result.failed and result.score is None and result.attempts == 2 and len(server.chat_requests()) == 2
    assert "bad response" in result.error and server.base_url in result.error and "has no attribute" not in result.error
    healed = fault_server(items=ITEMS, faults=[Fault(kind, mode="judge", times=1)])
    assert _judge(healed)(QUESTION, "STOP", "STOP").score == 1.0
