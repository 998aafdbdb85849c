"""MME-RealWorld keeps its official letter rule, byte for byte.

``golden/mme_realworld_letter.json``: ``extract_characters_regex(s, question['Answer choices'])`` of
yfzhang114/MME-RealWorld evaluation/eval_your_results.py lines 23-45 and 81 @ 87096fc, run on MME-specific
inputs and the mc consensus templates, English, Chinese (full-width brackets) and count choices. The
lmms-eval and VLMEvalKit copies (fixed prefix list, no option texts) are recorded beside it; where they
differ ("Best answer: C" reads "B" officially) we follow the official scorer.
"""

import json
from pathlib import Path

import pytest

from mini_o3.data.bench import BenchRecord
from mini_o3.data.schemas import problem_text
from mini_o3.task.scoring import mme_realworld_letter

GOLDEN = json.loads((Path(__file__).parent / "golden" / "mme_realworld_letter.json").read_text(encoding="utf-8"))
CHOICES, CASES = GOLDEN["header"]["choice_sets"], GOLDEN["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['choices']}:{c['input']!r}" for c in CASES])
def test_letter_equals_the_official_rule(case):
    assert case["expected"] == case["official"]
    assert mme_realworld_letter(case["input"], CHOICES[case["choices"]]) == case["expected"]


def test_table_records_where_the_copies_differ():
    differ = [c for c in CASES if c["official"] != c["lmms_eval"]]
    assert GOLDEN["header"]["count"] == len(CASES) and GOLDEN["header"]["official_differs_from_lmms_eval"] == len(differ)
    assert {"Best answer: C", "Best option: D"} <= {c["input"] for c in differ}


def test_mme_records_score_with_the_official_rule():
    """The record's rule scorer routes MME-RealWorld items (choices in metadata) to the official rule."""
    choices = CHOICES["en"]
    options = [c[4:] for c in choices]
    for answer in "ABCDE":
        record = BenchRecord(
            id="mme1", data_source="mme_realworld", problem=problem_text("Color?", options), question="Color?",
            answer=answer, answer_type="mc", options=options, images=["img/m.jpg"], metadata={"choices": choices},
        )
        assert record.is_mme
        for case in (c for c in CASES if c["choices"] == "en"):
            assert record.rule_score(case["input"]) == float(case["expected"] == answer), case["input"]
