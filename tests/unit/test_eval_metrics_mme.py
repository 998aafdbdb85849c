"""MME-RealWorld breakdown against the official scorer's own numbers.

The rule (yfzhang114/MME-RealWorld @87096fcf6a67ee5a0016b81cb1746ccf14e1dd68,
evaluation/eval_your_results.py lines 70-126): questions are counted per Task > Subtask >
Category key (line 73: lower-cased; lines 78-79: ``…attribute…`` → ``<first part>/attribute``) and
every accuracy is correct / items of its group (item-weighted), overall = succ_all / sum_all. The
README's "Avg-C" is the unweighted mean of a task's subtask accuracies. Golden numbers:
tests/data/golden_mme_realworld/README.md (the official script and VLMEvalKit's
get_dimension_rating, run on 1,255 generated items)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mini_o3.evaluate.metrics import mme_category_key, mme_realworld_accuracy
from mini_o3.task import score_mme_realworld

GOLDEN = json.loads((Path(__file__).parents[1] / "data" / "golden_mme_realworld" / "scoring.json").read_text())
CASES = {case["name"]: case for case in GOLDEN["cases"]}


def breakdown(case: dict) -> dict:
    items = case["items"]
    return mme_realworld_accuracy(
        [(it["Task"], it["Subtask"], it["Category"], float(c)) for it, c in zip(items, case["official"]["correct"], strict=True)]
    )


@pytest.mark.parametrize("name", list(CASES))
def test_breakdown_equals_the_official_aggregation(name: str):
    case = CASES[name]
    exact, counts, printed = case["exact"], case["official"]["counts"], case["official"]["printed"]
    got = breakdown(case)
    assert got["questions"] == case["official"]["sum_all"]
    assert got["accuracy"] == pytest.approx(exact["Overall"], abs=1e-12)
    assert round(got["accuracy"], 4) == pytest.approx(printed["overall"], abs=1e-9)
    filled = {t: {s: c for s, c in subs.items() if c} for t, subs in counts.items()}
    assert set(got["tasks"]) == {t for t, subs in filled.items() if subs}
    for task, t in got["tasks"].items():
        assert t["accuracy"] == pytest.approx(exact[task]["Avg"], abs=1e-12)
        assert t["questions"] == printed["tasks"][task]["items"]
        assert set(t["subtasks"]) == set(filled[task])
        for subtask, s in t["subtasks"].items():
            assert s["accuracy"] == pytest.approx(exact[task][subtask]["Avg"], abs=1e-12)
            assert s["questions"] == printed["tasks"][task]["subtasks"][subtask]["items"]
            official = counts[task][subtask]
            assert list(s["categories"]) == sorted(official)
            for key, cat in s["categories"].items():
                assert cat["accuracy"] == pytest.approx(exact[task][subtask][key], abs=1e-12)
                assert cat["questions"] == official[key]["true"] + official[key]["false"]
        subtask_accs = [exact[task][sub]["Avg"] for sub in filled[task]]
        assert t["avg_c"] == pytest.approx(sum(subtask_accs) / len(subtask_accs), abs=1e-12)


def test_golden_covers_both_tasks_attribute_folding_and_quirky_outputs():
    large = CASES["large_mixed"]
    keys = {k for subs in large["official"]["counts"].values() for cats in subs.values() for k in cats}
    assert {"person/attribute", "vehicle/attribute", "vehicle/counting"} <= keys
    assert set(large["official"]["counts"]) == {"Perception", "Reasoning"}
    assert "" in large["official"]["letters"] and sum(len(c["items"]) for c in GOLDEN["cases"]) == 1255


def test_task_kit_letter_rule_gives_the_official_correctness():
    """score_mme_realworld = the official extract_characters_regex(Output, choices) == Ground truth
    on every golden item (a guard: this held before the breakdown existed)."""
    for case in GOLDEN["cases"]:
        for item, correct in zip(case["items"], case["official"]["correct"], strict=True):
            got = score_mme_realworld(item["Output"], item["Ground truth"], item["Answer choices"])
            assert got == correct, (case["name"], item["Output"], item["Ground truth"])


def test_k_samples_weight_questions_equally_within_each_group():
    items = [
        ("Perception", "Remote Sensing", "count", 1.0),
        ("Perception", "Remote Sensing", "Count", 0.25),  # same key as "count"
        ("Perception", "Monitoring", "Person/attribute/color", 0.5),
        ("Reasoning", "Monitoring", "calculate", 0.0),
    ]
    got = mme_realworld_accuracy(items)
    assert got["questions"] == 4 and got["accuracy"] == pytest.approx(1.75 / 4)
    perception = got["tasks"]["Perception"]
    assert list(got["tasks"]) == ["Perception", "Reasoning"]
    assert perception["accuracy"] == pytest.approx(1.75 / 3)
    assert perception["avg_c"] == pytest.approx((0.625 + 0.5) / 2)
    assert perception["subtasks"]["Remote Sensing"]["categories"] == {"count": {"questions": 2, "accuracy": 0.625}}
    assert list(perception["subtasks"]["Monitoring"]["categories"]) == ["person/attribute"]
    assert mme_realworld_accuracy([]) == {"questions": 0, "accuracy": None, "tasks": {}}
    with pytest.raises(ValueError, match=r"score must be in \[0, 1\], got 2"):
        mme_realworld_accuracy([("Perception", "x", "y", 2)])


def test_category_key_is_the_official_rule():
    assert mme_category_key("Vehicle/counting") == "vehicle/counting"
    assert mme_category_key("Person/Attribute/clothing") == "person/attribute"
    assert mme_category_key("attribute") == "attribute/attribute"
    assert mme_category_key("Objects_Identify") == "objects_identify"
