"""The evaluate stage scores under the paper protocol when it has judge credentials; without them a
pipeline falls back to ``rule`` explicitly (recorded, warned), and an explicit ``protocol=paper``
without a judge fails instead of silently changing what the numbers mean."""

from __future__ import annotations

import pytest

from mini_o3.evaluate.runner import resolve_config
from mini_o3.stages.common import StageError
from mini_o3.stages.evaluate import scoring_protocol

JUDGE_ENV = ("END_POINT", "API_VERSION", "API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")


@pytest.fixture(autouse=True)
def no_judge_env(monkeypatch):
    for name in JUDGE_ENV:
        monkeypatch.delenv(name, raising=False)


def test_paper_with_a_judge():
    config, fallback = scoring_protocol(resolve_config(None, []), True, [])
    assert config.protocol == "paper" and fallback is None


def test_credentials_in_the_environment_choose_paper(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    config, fallback = scoring_protocol(resolve_config(None, []), None, [])
    assert config.protocol == "paper" and fallback is None


@pytest.mark.parametrize(("judge", "reason"), [(False, "given no judge"), (None, "OPENAI_API_KEY not set")])
def test_no_judge_falls_back_to_rule_and_says_why(judge, reason):
    config, fallback = scoring_protocol(resolve_config(None, ["max_turns=2"]), judge, ["max_turns=2"])
    assert config.protocol == "rule" and config.limits().max_turns == 2
    assert fallback and "paper protocol needs the LLM judge" in fallback and reason in fallback


def test_explicit_paper_without_a_judge_fails():
    with pytest.raises(StageError, match="protocol=paper needs the LLM judge.*given no judge"):
        scoring_protocol(resolve_config(None, ["protocol=paper"]), False, ["protocol=paper"])


def test_explicit_rule_is_kept_without_a_fallback_note():
    config, fallback = scoring_protocol(resolve_config(None, ["protocol=rule"]), True, ["protocol=rule"])
    assert config.protocol == "rule" and fallback is None
