"""The (weight-0) grounding-format reward equals upstream's.

``golden/format_reward.json``: ``grounding_format_reward(turns) -> (format_score, tool_call_count)`` of
Mini-o3/Mini-o3 @ 8654dbf verl/utils/reward_score/general_qa_tool.py lines 235-281, run on hand-written
and seeded random turn lists (stripping of a lone turn and of tool turns, the unstripped final turn,
the ``!= 1 and != 1`` grounding count test, counting that stops at the first malformed tool turn).
"""

import json
from pathlib import Path

from mini_o3.task import format_reward
from mini_o3.task.reward import grounding_format_reward

GOLDEN = json.loads((Path(__file__).parent / "golden" / "format_reward.json").read_text(encoding="utf-8"))
CASES = GOLDEN["cases"]


def test_format_reward_matches_upstream():
    assert GOLDEN["header"]["count"] == len(CASES) >= 400
    wrong = [(c["turns"], grounding_format_reward(c["turns"]), (c["format"], c["tool_call_count"])) for c in CASES
             if grounding_format_reward(c["turns"]) != (c["format"], c["tool_call_count"])]
    assert not wrong, wrong[:3]
    assert all(format_reward(c["turns"]) == c["format"] for c in CASES)


def test_cases_cover_both_outcomes_and_several_calls():
    assert {c["format"] for c in CASES} == {0, 1}
    assert max(c["tool_call_count"] for c in CASES) >= 3
