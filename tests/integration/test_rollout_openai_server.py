"""OpenAIChatPolicy + run_episode on synthetic benchmark items against the scripted server:
every canned behaviour maps to the right termination; threads share one policy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtures.scripted_server import ScriptedServer, synthetic_items

from mini_o3.rollout.openai_policy import (
    OpenAIChatPolicy,
    OpenAIPolicyConfig,
    request_seed,
)
from mini_o3.task import EVAL_LIMITS, run_episode
from mini_o3.task.scoring import score_free_form

pytestmark = pytest.mark.slow  # rollouts against a scripted OpenAI server

PAIRS = synthetic_items(4, seed=11)


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(items={item.question: item for _, item in PAIRS}, flaky_failures=2) as srv:
        yield srv


def _run(server: ScriptedServer, model: str, **kw):
    config = OpenAIPolicyConfig(base_url=server.base_url, model=model, backoff_s=0.001, concurrency=4, **kw)
    with OpenAIChatPolicy(config) as policy:
        with ThreadPoolExecutor(4) as pool:
            trajs = list(pool.map(lambda p: run_episode(policy.for_episode(p[0].sample_id, 0), p[0], EVAL_LIMITS), PAIRS))
        return trajs, dict(policy.stats)


def test_oracle_answers_correctly_after_a_crop(server):
    trajs, stats = _run(server, "oracle")
    for traj, (_, item) in zip(trajs, PAIRS):
        assert traj.termination == "answer" and traj.num_crops == 1
        assert score_free_form(traj.answer, item.solution) == 1.0
    assert stats["requests"] == 2 * len(PAIRS) and stats["retries"] == 0


def test_no_zoom_and_wrong(server):
    right, _ = _run(server, "no_zoom")
    wrong, _ = _run(server, "wrong")
    assert all(t.termination == "answer" and t.num_turns == 1 for t in right + wrong)
    assert [score_free_form(t.answer, i.solution) for t, (_, i) in zip(right, PAIRS)] == [1.0] * len(PAIRS)
    assert [score_free_form(t.answer, i.solution) for t, (_, i) in zip(wrong, PAIRS)] == [0.0] * len(PAIRS)


def test_endless_exceeds(server):
    trajs, _ = _run(server, "endless")
    for traj in trajs:
        assert traj.termination == "exceed" and traj.answer is None
        assert traj.num_turns == EVAL_LIMITS.max_images  # 11 crops, then the image budget is spent
        assert all(t.output.endswith("</grounding>") for t in traj.turns)  # trailing text cut by the stop


def test_malformed_gets_error_then_answers(server):
    trajs, _ = _run(server, "malformed")
    for traj, (_, item) in zip(trajs, PAIRS):
        assert traj.turns[0].error is not None and traj.num_crops == 0
        assert traj.termination == "answer" and score_free_form(traj.answer, item.solution) == 1.0


def test_cut_is_void(server):
    trajs, _ = _run(server, "cut")
    assert all(t.termination == "void" and t.turns[0].finish_reason == "length" for t in trajs)


@pytest.mark.parametrize("mode", ["flaky", "flaky429"])
def test_flaky_is_retried_and_succeeds(server, mode):
    trajs, stats = _run(server, mode)
    assert all(t.termination == "answer" and t.num_crops == 1 for t in trajs)
    assert stats["retries"] == 2 * 2 * len(PAIRS) and stats["failures"] == 0


def test_seeds_are_deterministic_per_question_sample_turn(server):
    before = len(server.chat_requests("no_zoom"))
    _run(server, "no_zoom", seed=7)
    bodies = [r.body for r in server.chat_requests("no_zoom")[before:]]
    expected = {request_seed(7, s.sample_id, 0, 0) for s, _ in PAIRS}
    assert {b["seed"] for b in bodies} == expected
    for body in bodies:
        assert {"temperature", "top_p", "top_k", "repetition_penalty", "max_tokens", "stop", "seed"} <= set(body)
