"""Free-form exact match next to the field's VQA normaliser.

``golden/free_form_match.json``: lmms-eval's ``EvalAIAnswerProcessor`` (EvolvingLMMs-Lab/lmms-eval
lmms_eval/tasks/_task_utils/vqa_eval_metric.py line 4 @ 75571cf) on each pair, and our expected score;
where they differ the case carries a reason (numbers keep their sign, decimals are canonical, NFKC,
symbols dropped, articles kept).
"""

import json
from pathlib import Path

import pytest

from mini_o3.task.scoring import score_free_form

GOLDEN = json.loads((Path(__file__).parent / "golden" / "free_form_match.json").read_text(encoding="utf-8"))
CASES = GOLDEN["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['prediction']!r}~{c['ground_truth']!r}" for c in CASES])
def test_free_form_score(case):
    assert score_free_form(case["prediction"], case["ground_truth"]) == case["expected"]
    assert ("reason" in case) == (case["vqa_match"] != case["expected"])


def test_sign_cases_are_covered():
    assert {("-3", "3"), ("3", "-3"), ("-12 degrees", "12 degrees")} <= {(c["prediction"], c["ground_truth"]) for c in CASES}
