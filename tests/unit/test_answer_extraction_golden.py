"""Answer extraction equals what upstream hands its judge.

``golden/answer_extraction.json``: for each assistant-turn list, the prediction Mini-o3's
``inner_acc_reward`` (Mini-o3/Mini-o3 @ 8654dbf verl/utils/reward_score/general_qa_tool.py lines 283-305,
``gpt_extract_answer=True``) passes to the judge in the ``strict`` (recipe), ``split`` (yaml default)
and ``strict_v2`` modes; null where it returns 0 without calling the judge.
"""

import json
from pathlib import Path

import pytest

from mini_o3.task import extract_answer

GOLDEN = json.loads((Path(__file__).parent / "golden" / "answer_extraction.json").read_text(encoding="utf-8"))
CASES = GOLDEN["cases"]


@pytest.mark.parametrize("mode", ["strict", "split", "strict_v2"])
def test_extraction_matches_upstream(mode):
    assert GOLDEN["header"]["count"] == len(CASES) >= 400
    wrong = [(c["turns"], extract_answer(c["turns"], mode), c[mode]) for c in CASES if extract_answer(c["turns"], mode) != c[mode]]
    assert not wrong, wrong[:3]


def test_cases_exercise_every_branch():
    assert any(c["strict"] is None for c in CASES) and any(c["strict_v2"] is None for c in CASES)
    assert any(c["split"] != c["split"].strip() or (c["strict"] and c["strict"] != c["strict"].strip()) for c in CASES)
    assert any(c["strict"] is None and c["split"] for c in CASES)  # split never gives up: the whole text
