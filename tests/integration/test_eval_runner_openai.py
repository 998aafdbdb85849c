"""``run_eval`` with ``openai:URL#mode`` against the scripted OpenAI-compatible server, scored under
the paper protocol by default through the server's scripted judge, and judge fault injection
(failures counted; ``score_zero`` vs ``exclude``).

Upstream rule (Mini-o3/Mini-o3 @8654dbf42d2ea98b9d81b6cc7179026dd0598fdf): evaluation is
``trainer.val_only=True`` with ``reward_model.use_hybrid_reward_manager=True`` (README.md L181,
L195), so every validation sample is scored by ``general_qa_tool`` (verl/trainer/main_ppo.py
L149-156; verl/workers/rollout/vllm_rollout/vllm_async_engine.py L774-775), multiple choice
included; a failed judge call leaves the sample's reward at 0
(verl/workers/reward_manager/naive_multithreads_tool.py L134, L160-164)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.scripted_server import ScriptedItem

from mini_o3.data.bench import read_records, sample_meta
from mini_o3.data.synthetic import SynthConfig, generate
from mini_o3.evaluate.config import EvalConfig
from mini_o3.judge.config import JudgeConfig
from mini_o3.evaluate.runner import run_eval

pytestmark = pytest.mark.slow  # evaluations against scripted OpenAI servers

N_TEST = 6


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "synth"
    generate(SynthConfig(width_range=(512, 768), height_range=(512, 768)), out, 1, N_TEST, 3, progress=False)
    return out


@pytest.fixture
def server(bench, scripted_server):
    items = [
        ScriptedItem(r.problem.replace("<image>\n", "", 1), r.answer, tuple(sample_meta(r).target_bbox_rel))
        for r in read_records(bench / "val.parquet")
    ]
    return scripted_server(items={i.question: i for i in items})


def _judge(server, model: str = "judge", **changes) -> JudgeConfig:
    return JudgeConfig(api="openai", base_url=server.base_url, model=model, retry_sleep_s=0.0,
                           rate_limit_sleep_s=0.0, **changes)


def _config(server, **changes) -> EvalConfig:
    changes.setdefault("judge", _judge(server))
    return EvalConfig(k=2, max_turns=4, max_images=4, concurrency=4, openai={"max_retries": 3, "backoff_s": 0.0}, **changes)


def test_openai_oracle_and_endless(bench, server, tmp_path):
    oracle = run_eval(f"openai:{server.base_url}#oracle", [bench], tmp_path / "o", _config(server), progress=False)
    o = oracle.report["benchmarks"]["synth"]["overall"]
    assert o["avg_at_k"] == 1.0 and o["behaviour"]["tool_calls"] == 2 * N_TEST and o["behaviour"]["generated_tokens"] > 0
    endless = run_eval(f"openai:{server.base_url}#endless", [bench], tmp_path / "e", _config(server), progress=False)
    assert endless.report["benchmarks"]["synth"]["overall"]["behaviour"]["exceed_rate"] == 1.0
    flaky = run_eval(f"openai:{server.base_url}#flaky", [bench], tmp_path / "f", _config(server), progress=False)
    assert flaky.report["benchmarks"]["synth"]["overall"]["avg_at_k"] == 1.0


def test_paper_protocol_by_default_judges_every_sample(bench, server, tmp_path):
    """No protocol given: the scripted judge scores every sample, multiple choice included."""
    records = read_records(bench / "val.parquet")
    assert {r.answer_type for r in records} == {"mc", "free"}
    result = run_eval(f"openai:{server.base_url}#no_zoom", [bench], tmp_path / "p", _config(server), progress=False)
    o = result.report["benchmarks"]["synth"]["overall"]
    assert result.report["protocol"]["name"] == "paper" and result.report["protocol"]["comparable_to_paper"]
    assert o["behaviour"]["judge_calls"] == 2 * N_TEST and o["avg_at_k"] == 1.0
    judged = [r.body["messages"][1]["content"] for r in server.chat_requests("judge")]
    mc = next(r for r in records if r.answer_type == "mc")
    assert len(judged) == 2 * N_TEST and sum(f"**Ground Truth Answer**: {mc.answer}\n" in u and mc.problem in u
                                             for u in judged) >= 2
    assert "Scoring protocol **paper**" in (tmp_path / "p" / "report.md").read_text()
    rule = run_eval(f"openai:{server.base_url}#no_zoom", [bench], tmp_path / "r", _config(server, protocol="rule"),
                    progress=False)
    assert rule.config_hash != result.config_hash and rule.report["protocol"]["comparable_to_paper"] is False
    assert len(server.chat_requests("judge")) == 2 * N_TEST  # rule called no judge
    assert "not comparable to the paper" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize("policy", ["score_zero", "exclude"])
def test_judge_failures_are_counted(bench, server, tmp_path, policy):
    judge = _judge(server, "judge_5xx", max_attempts=2)
    result = run_eval(f"openai:{server.base_url}#no_zoom", [bench], tmp_path / policy,
                      _config(server, judge=judge, judge_failure=policy), progress=False)
    o = result.report["benchmarks"]["synth"]["overall"]
    assert o["behaviour"]["judge_failures"] == 2 * N_TEST and o["behaviour"]["judge_calls"] == 2 * N_TEST
    assert o["excluded"] == (2 * N_TEST if policy == "exclude" else 0)
    if policy == "score_zero":  # correct answers whose judge call failed count 0, as upstream's validation
        assert o["avg_at_k"] == 0.0
    assert result.report["protocol"]["judge_failures"] == 2 * N_TEST
    assert f"judge failures {2 * N_TEST}" in (tmp_path / policy / "report.md").read_text()


def test_judge_scores_wrong_answers_zero(bench, server, tmp_path):
    result = run_eval(f"openai:{server.base_url}#wrong", [bench], tmp_path / "j", _config(server), progress=False)
    o = result.report["benchmarks"]["synth"]["overall"]
    assert o["behaviour"]["judge_failures"] == 0 and o["behaviour"]["judge_calls"] == 2 * N_TEST and o["avg_at_k"] == 0.0
