"""Judge client against the scripted server: 0/1 parsing, cache, bounded retries, failures."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest


from mini_o3.evaluate.config import EvalConfig
from mini_o3.judge.client import Judge, JudgeError
from mini_o3.judge.config import JudgeConfig
from mini_o3.rl.config import RLConfig, RLJudgeConfig

Q = "<image>\nWhat number is on the door?"


def _judge(server, model: str = "judge", **kw) -> Judge:
    config = JudgeConfig(api="openai", base_url=server.base_url, model=model, retry_sleep_s=0,
                             rate_limit_sleep_s=0, **kw)
    return Judge(config)


def test_scores_zero_and_one(scripted_server):
    judge = _judge(scripted_server())
    ok = judge(Q, "42", "forty-two")
    assert (ok.score, ok.failed, ok.attempts, ok.cached) == (0.0, False, 1, False)  # "forty two" != "42"
    assert judge(Q, "42", " 42. ").score == 1.0
    assert judge(Q, "Red car", "red  CAR").score == 1.0
    none = judge(Q, "42", None)
    assert none.score == 0.0 and not none.failed and none.attempts == 0


def test_request_settings_follow_the_seed(scripted_server):
    server = scripted_server()
    _judge(server, "judge_flaky").judge(Q, "42", "42")
    bodies = [r.body for r in server.chat_requests()]
    assert [b["temperature"] for b in bodies] == [0.0, 0.2, 0.4]  # 2 scripted 500s, then a verdict
    assert all(b["max_tokens"] == 16384 for b in bodies)
    assert bodies[0]["messages"][0]["role"] == "system" and "**Ground Truth Answer**: 42" in bodies[0]["messages"][1]["content"]


def test_cache_hit_persists(scripted_server, tmp_path):
    """Keys hold the prediction as sent: upstream formats the unstripped strict match into the
    prompt (Mini-o3/Mini-o3 @8654dbf verl/utils/reward_score/general_qa_tool.py L288-292, L308),
    so "  42 " is another prompt than "42" and must not reuse its verdict."""
    server = scripted_server()
    cache = str(tmp_path / "judge.sqlite")
    first = _judge(server, cache_path=cache)
    assert not first(Q, "42", "42").cached
    hit = first(Q, "42", "42")
    assert hit.cached and hit.score == 1.0 and hit.attempts == 0
    assert not first(Q, "42", "  42 ").cached  # other prompt bytes, other key
    first.close()
    again = _judge(server, cache_path=cache)
    assert again(Q, "42", "42").cached and len(again.cache) == 2
    assert not again(Q, "43", "42").cached  # other ground truth, other key
    assert len(server.chat_requests()) == 3
    user = server.chat_requests()[1].body["messages"][1]["content"]
    assert "**Model Predicted Answer**:   42 \n" in user
    other_model = _judge(server, cache_path=cache, model="judge_flaky")
    assert not other_model(Q, "42", "42").cached


@pytest.mark.parametrize("mode", ["judge_5xx", "judge_garbage"])
def test_faults_fail_after_bounded_attempts(scripted_server, mode):
    server = scripted_server()
    judge = _judge(server, mode, cache_path=None)
    result = judge(Q, "42", "42")
    assert result.failed and result.score is None and result.attempts == 5
    assert mode.split("_")[1] in ("5xx", "garbage") and "judge" in (result.error or "")
    assert len(server.chat_requests()) == 5 and judge.stats["failures"] == 1


def test_rate_limit_does_not_count_an_attempt_but_is_bounded(scripted_server):
    server = scripted_server()
    result = _judge(server, "judge_429", max_rate_limit_waits=3)(Q, "42", "42")
    assert result.failed and result.attempts == 0 and "rate limited" in (result.error or "")
    assert len(server.chat_requests()) == 4


def test_failures_are_not_cached(scripted_server, tmp_path):
    server = scripted_server()
    judge = _judge(server, "judge_garbage", cache_path=str(tmp_path / "c.sqlite"), max_attempts=1)
    assert judge(Q, "42", "42").failed and len(judge.cache) == 0


def test_thread_safe_bounded_concurrency(scripted_server, tmp_path):
    server = scripted_server()
    judge = _judge(server, cache_path=str(tmp_path / "c.sqlite"), concurrency=2)
    active, peak, lock = [0], [0], threading.Lock()
    create = judge.client.chat.completions.create

    def counting(**kw):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return create(**kw)
        finally:
            with lock:
                active[0] -= 1

    judge.client.chat.completions.create = counting
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: judge(Q, str(i % 5), str(i % 5)), range(40)))
    assert all(r.score == 1.0 for r in results) and peak[0] <= 2
    assert judge.stats["calls"] == 40 and len(judge.cache) == 5


def test_env_configuration(monkeypatch):
    for name in ("END_POINT", "API_VERSION", "API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert JudgeConfig().flavour() == "openai"
    with pytest.raises(JudgeError, match="OPENAI_API_KEY"):
        _ = Judge(JudgeConfig()).client
    monkeypatch.setenv("END_POINT", "https://example.invalid")
    assert JudgeConfig().flavour() == "azure"
    with pytest.raises(JudgeError, match="API_VERSION"):
        _ = Judge(JudgeConfig()).client
    monkeypatch.setenv("API_VERSION", "2024-06-01")
    monkeypatch.setenv("API_KEY", "k")
    assert type(Judge(JudgeConfig()).client).__name__ == "AzureOpenAI"
    rl = RLJudgeConfig(cache_path="x.sqlite")
    assert rl.model == "gpt-4o-2024-11-20" and rl.max_attempts == 5 and rl.cache_path == "x.sqlite"
    assert type(Judge(RLJudgeConfig()).client).__name__ == "AzureOpenAI"  # the RL judge is the same client


def test_one_judge_config_with_the_seed_defaults_in_rl_and_evaluation():
    shared = set(JudgeConfig.model_fields)
    assert isinstance(RLConfig().judge, JudgeConfig) and type(EvalConfig().judge) is JudgeConfig
    assert RLConfig().judge.model_dump(include=shared) == EvalConfig().judge.model_dump() == JudgeConfig().model_dump()
    assert set(RLJudgeConfig.model_fields) - shared == {"enabled", "failure_drops_group_in_training",
                                                        "failure_scores_zero_in_validation"}
    assert JudgeConfig().concurrency == 300  # seed data.gpt_threads (its evaluation is the training command)
