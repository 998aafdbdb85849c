"""Scoring protocols of the evaluator: ``paper`` (the default) scores the way the released code's
evaluation does; ``rule`` is an explicit, labelled choice.

Upstream rule (Mini-o3/Mini-o3 @8654dbf42d2ea98b9d81b6cc7179026dd0598fdf):

* README.md L188-196: evaluation = the training command plus ``trainer.val_only=True``; that
  command keeps ``reward_model.use_hybrid_reward_manager=True`` (L181), ``data.gpt_extract_answer=True``
  and ``data.extract_answer_tags="strict"`` (L121-122), ``data.gpt_general_qa_reward_fn="general_qa_tool"`` (L120).
* verl/trainer/main_ppo.py L149-156: with the hybrid manager, validation gets ``val_gpt_reward_fn``
  (``general_qa_tool``); verl/workers/rollout/vllm_rollout/vllm_async_engine.py L228-233, L774-775:
  every validation sample is scored by it, whatever its data source or answer type.
* verl/utils/reward_score/general_qa_tool.py ``inner_acc_reward`` L283-316: strict extraction
  ``re.search(r'<answer>(.*?)</answer>', ' '.join(turns), re.DOTALL)``; no match → 0.0 without a
  call; else ``match.group(1)`` (unstripped) goes into the judge prompt; no rule pre-check.
  A judge failure returns ``{"is_filter": True}`` (L312-313), and
  verl/workers/reward_manager/naive_multithreads_tool.py L134, L160-164 then leaves that sample's
  reward at the zeros it was initialised with: in validation a failed judge call counts 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mini_o3.data.bench import BenchRecord
from mini_o3.evaluate.config import EvalConfig
from mini_o3.judge.client import judge_setup_error
from mini_o3.judge.config import JudgeConfig
from mini_o3.evaluate.report import NOT_COMPARABLE, protocol_summary, render_markdown
from mini_o3.evaluate.runner import EvalError, build_judge, resolve_config, score_sample
from mini_o3.rollout.settings import flat_dump

JUDGE_ENV = ("END_POINT", "API_VERSION", "API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")


@pytest.fixture
def no_judge_env(monkeypatch):
    for name in JUDGE_ENV:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Verdict:
    score: float | None
    failed: bool = False
    attempts: int = 1
    cached: bool = False
    reply: str = ""


class RecordingJudge:
    """Returns ``verdict`` for every call and records what it was asked."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict, self.calls = verdict, []

    def __call__(self, question: str, ground_truth: str, prediction: str) -> Verdict:
        self.calls.append((question, ground_truth, prediction))
        return self.verdict


MC = BenchRecord(id="q1", data_source="vstar_bench", problem="<image>\nWhat colour is the cup?\n(A) red\n(B) blue",
                 question="What colour is the cup?", answer="B", answer_type="mc", options=["red", "blue"], images=["x/1.jpg"])
FREE = BenchRecord(id="q2", data_source="visual_probe_hard", problem="<image>\nWhat is written on the sign?",
                   question="What is written on the sign?", answer="EXIT", answer_type="free", images=["x/2.jpg"])


def test_paper_is_the_default_and_judge_settings_are_reachable():
    config = resolve_config(None, ["judge.base_url=http://judge.example:8000/v1", "judge.model=my-judge"])
    assert config.protocol == "paper" and EvalConfig().protocol == "paper"
    assert (config.judge.base_url, config.judge.model) == ("http://judge.example:8000/v1", "my-judge")
    assert EvalConfig().judge.model == "gpt-4o-2024-11-20"  # general_qa_tool.py L67
    with pytest.raises(EvalError, match="protocol"):
        resolve_config(None, ["protocol=judge-everything"])
    with pytest.raises(ValueError, match="protocol=rule"):
        EvalConfig(judge=None)


def test_paper_judges_every_answer_even_when_the_rule_already_agrees():
    """No rule pre-check: a rule-correct multiple-choice answer still goes to the judge, and the
    judge's verdict is the score (general_qa_tool.py L307-316)."""
    judge = RecordingJudge(Verdict(0.0))
    out = score_sample(MC, "B", judge, EvalConfig())
    assert judge.calls == [(MC.problem, "B", "B")]
    assert out["rule_score"] == 1.0 and out["score"] == 0.0 and out["judge"]["score"] == 0.0


def test_paper_sends_the_strict_match_unstripped_and_empty_answers_too():
    """``match.group(1)`` goes into the prompt as is, whitespace and empty spans included."""
    judge = RecordingJudge(Verdict(1.0))
    assert score_sample(FREE, "  EXIT \n", judge, EvalConfig())["score"] == 1.0
    assert score_sample(FREE, "", judge, EvalConfig())["score"] == 1.0
    assert [c[2] for c in judge.calls] == ["  EXIT \n", ""]


def test_paper_no_answer_block_scores_zero_without_a_call():
    judge = RecordingJudge(Verdict(1.0))
    out = score_sample(FREE, None, judge, EvalConfig())
    assert out["score"] == 0.0 and out["judge"] is None and judge.calls == []


@pytest.mark.parametrize(("policy", "score"), [("score_zero", 0.0), ("exclude", None)])
def test_paper_judge_failure_scores_zero_by_default(policy, score):
    judge = RecordingJudge(Verdict(None, failed=True, attempts=5))
    out = score_sample(MC, "B", judge, EvalConfig(judge_failure=policy))
    assert out["judge_failed"] and out["score"] == score and out["rule_score"] == 1.0
    assert EvalConfig().judge_failure == "score_zero"


def test_rule_never_calls_a_judge():
    judge = RecordingJudge(Verdict(1.0))
    config = EvalConfig(protocol="rule")
    assert score_sample(MC, "(B) blue", judge, config)["score"] == 1.0
    assert score_sample(FREE, "exit", judge, config)["score"] == 1.0
    assert score_sample(FREE, "the exit door", judge, config)["score"] == 0.0
    assert judge.calls == [] and build_judge(config) is None


def test_paper_without_credentials_is_one_clear_line(no_judge_env):
    with pytest.raises(EvalError) as info:
        build_judge(EvalConfig())
    message = str(info.value)
    assert "\n" not in message and "OPENAI_API_KEY" in message and "--protocol rule" in message
    assert "judge.base_url" in message and "not comparable" in message
    azure = judge_setup_error(JudgeConfig(api="azure"))
    assert azure and "END_POINT, API_VERSION, API_KEY" in azure
    assert judge_setup_error(JudgeConfig(base_url="http://127.0.0.1:1/v1")) is None  # keyless server


def test_config_hash_tracks_the_protocol_and_only_the_judge_that_scores():
    paper, rule = EvalConfig(), EvalConfig(protocol="rule")
    assert paper.config_hash("p") != rule.config_hash("p")
    assert paper.config_hash("p") != EvalConfig(judge=JudgeConfig(model="other")).config_hash("p")
    assert paper.config_hash("p") == EvalConfig(judge=JudgeConfig(concurrency=3)).config_hash("p")
    other_judge = EvalConfig(protocol="rule", judge=JudgeConfig(model="other"), judge_failure="exclude")
    assert rule.config_hash("p") == other_judge.config_hash("p")  # rule calls no judge


def _report(config: EvalConfig, failures: int = 0) -> dict:
    behaviour = {"samples": 0, "judge_failures": failures}
    summary = {"questions": 1, "samples": 1, "k": 1, "avg_at_k": 1.0, "se": None, "ci95": None, "maj_at_k": 1.0,
               "pass_at_k": {"1": 1.0}, "excluded": 0, "missing": 0, "behaviour": behaviour}
    benchmarks = {"vstar": {"overall": summary, "data_sources": {"vstar_bench": summary}, "categories": {"-": summary}}}
    return {"policy": "p", "config_hash": "h", "store": "s", "config": flat_dump(config, mode="json"),
            "protocol": protocol_summary(config, benchmarks), "benchmarks": benchmarks}


def test_report_states_the_protocol():
    paper = _report(EvalConfig(), failures=3)
    assert paper["protocol"]["name"] == "paper" and paper["protocol"]["comparable_to_paper"]
    assert paper["protocol"]["judge"]["model"] == "gpt-4o-2024-11-20" and paper["protocol"]["judge_failures"] == 3
    assert "base_url" not in paper["protocol"]["judge"]  # endpoints and keys are never written
    md = render_markdown(paper)
    assert "Scoring protocol **paper**" in md and "judge failures 3 (scored 0)" in md and NOT_COMPARABLE not in md
    rule = _report(EvalConfig(protocol="rule"))
    assert rule["protocol"] == {**rule["protocol"], "name": "rule", "comparable_to_paper": False, "note": NOT_COMPARABLE}
    assert "Scoring protocol **rule**" in render_markdown(rule) and NOT_COMPARABLE in render_markdown(rule)
