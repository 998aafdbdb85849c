"""Multiple-choice letter reading against the lmms-eval / VLMEvalKit consensus table.

``golden/mc_answer_consensus.json`` holds, per input, what six upstream readers returned when run
(VLMEvalKit ``can_infer``, open-compass/VLMEvalKit vlmeval/utils/matching_util.py line 124 @ e8e78f0;
lmms-eval @ 75571cf: ``HRBenchEval.can_infer`` tasks/hrbench/hrbench_evals.py line 92,
``extract_answer_letter`` tasks/vstar_bench/utils.py line 44, ``parse_mmmu_multi_choice_response``
tasks/_task_utils/mmmu_mcq_utils.py line 17, ``extract_mcq_answer`` tasks/_task_utils/mcq_extract.py
line 66, ``parse_mcq`` tasks/_task_utils/reasoning_utils.py line 201), their majority, and the letter
we expect; every expectation that departs from the majority carries a documented reason.
"""

import json
from collections import Counter
from pathlib import Path

import pytest

from mini_o3.data.bench import BenchRecord
from mini_o3.data.schemas import problem_text
from mini_o3.task.scoring import option_letter, score_multiple_choice

GOLDEN = json.loads((Path(__file__).parent / "golden" / "mc_answer_consensus.json").read_text(encoding="utf-8"))
HEADER, CASES = GOLDEN["header"], GOLDEN["cases"]
OPTION_SETS = HEADER["option_sets"]
#: Benchmark data source of each option set (the record's rule scorer routes on it).
DATA_SOURCES = {"vstar_bench/direct_attributes": "vstar_bench", "vstar_bench/relative_position": "vstar_bench",
                "hrbench": "hrbench_4k"}


def _id(case):
    return f"{case['set']}:{case['input']!r}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_option_letter_matches_the_table(case):
    assert option_letter(case["input"], OPTION_SETS[case["set"]]) == case["expected"]


def test_table_is_consistent():
    """The majority field follows from the readers' outputs, and every departure names a reason."""
    assert HEADER["count"] == len(CASES) >= 1000
    for case in CASES:
        options = OPTION_SETS[case["set"]]
        valid = {chr(65 + i) for i in range(len(options))}
        verdicts = [r if r in valid else None for r in case["readers"]]
        top, n = Counter(verdicts).most_common(1)[0]
        assert case["consensus"] == (top if n > len(verdicts) / 2 else "no-majority"), _id(case)
        if case["expected"] != case["consensus"]:
            assert case.get("reason") in HEADER["reasons"], _id(case)
        else:
            assert "reason" not in case, _id(case)


def test_issue_forms_are_covered():
    """Issue 14's list: accepted forms and the two rejected kinds all appear in the table."""
    templates = {c["template"] for c in CASES}
    for form in ("The answer is {L}", "({L}) {t}", "{L}, {t}", "**{L}**", "Option {L}", "[{L}]", "{L} - {t}", "{l}",
                 "{F}", "（{F}）", "答案是{L}", "\\boxed{{{L}}}", "{L} or {M}", "{L}{M}", "Definitely"):
        assert form in templates, form


@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
def test_benchmark_records_score_the_table(option_set):
    """Per benchmark: the record's rule scorer (what the evaluator and the RL rule path call) gives
    1 exactly for the expected letter."""
    options = OPTION_SETS[option_set]
    for answer in (chr(65 + i) for i in range(len(options))):
        record = BenchRecord(
            id="q1", data_source=DATA_SOURCES[option_set], problem=problem_text("Which?", options), question="Which?",
            answer=answer, answer_type="mc", options=options, images=["img/q1.jpg"],
        )
        for case in (c for c in CASES if c["set"] == option_set):
            assert record.rule_score(case["input"]) == float(case["expected"] == answer), _id(case)
            assert score_multiple_choice(case["input"], answer, options) == float(case["expected"] == answer)
