"""report.json / report.md carry MME-RealWorld's Perception / Reasoning split, subtask accuracies
and Avg-C beside the overall (the official aggregation: yfzhang114/MME-RealWorld @87096fc
evaluation/eval_your_results.py lines 70-126, item-weighted per task and subtask; Avg-C is the
README's unweighted mean of a task's subtask accuracies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mini_o3.data.bench import BenchRecord
from mini_o3.evaluate.config import EvalConfig
from mini_o3.evaluate.metrics import score_summary
from mini_o3.evaluate.report import build_report, mme_realworld_summary, mme_section, render_markdown
from mini_o3.evaluate.runner import Question
from mini_o3.evaluate.store import SampleStore

CHOICES = ["(A) 1", "(B) 2", "(C) 3", "(D) 4", "(E) none"]


def record(qid: str, task: str, subtask: str, category: str, data_source: str = "mme_realworld") -> BenchRecord:
    return BenchRecord(
        id=qid, data_source=data_source, problem="<image>\nHow many?\n(A) 1\n(B) 2", question="How many?",
        answer="A", answer_type="mc", options=["1", "2"], images=["MME/data/x.png"], category=f"{subtask}/{category}",
        metadata={"task": task, "subtask": subtask, "category": category, "choices": CHOICES},
    )


def sample(q: Question, j: int, score) -> dict:
    return {"benchmark": q.benchmark, "question_id": q.record.id, "sample": j, "score": score, "answer": "A",
            "answer_key": "A", "num_turns": 1, "tool_calls": 0, "num_crops": 0, "termination": "answer"}


def questions_and_store(tmp_path: Path) -> tuple[list[Question], SampleStore]:
    specs = [  # (task, subtask, category, sample scores)
        ("Perception", "Remote Sensing", "count", [1, 1]),
        ("Perception", "Remote Sensing", "color", [0, 1]),
        ("Perception", "Monitoring", "Vehicle/attribute/color", [0, 0]),
        ("Reasoning", "Monitoring", "calculate", [1, None]),  # an excluded sample is left out
    ]
    store = SampleStore(tmp_path, "h")
    questions = []
    for i, (task, sub, cat, scores) in enumerate(specs):
        q = Question("mme", record(f"q{i}", task, sub, cat), tmp_path / "x.png", k=2)
        questions.append(q)
        for j, score in enumerate(scores):
            store.append(sample(q, j, score))
    return questions, store


def test_report_json_has_the_official_breakdown_beside_the_overall(tmp_path: Path):
    questions, store = questions_and_store(tmp_path)
    report = build_report(questions, store, EvalConfig(), "p")
    mme = report["benchmarks"]["mme"]["mme_realworld"]
    assert report["benchmarks"]["mme"]["overall"]["avg_at_k"] == pytest.approx(mme["accuracy"])  # same overall
    assert mme["questions"] == 4 and mme["accuracy"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    perception, reasoning = mme["tasks"]["Perception"], mme["tasks"]["Reasoning"]
    assert perception["accuracy"] == pytest.approx(1.5 / 3) and reasoning["accuracy"] == 1.0
    assert perception["subtasks"]["Remote Sensing"]["accuracy"] == 0.75
    assert perception["avg_c"] == pytest.approx((0.75 + 0.0) / 2)
    assert list(perception["subtasks"]["Monitoring"]["categories"]) == ["vehicle/attribute"]


def test_other_benchmarks_get_no_breakdown(tmp_path: Path):
    store = SampleStore(tmp_path, "h")
    q = Question("vstar", record("v0", "Perception", "x", "y", data_source="vstar_bench"), tmp_path / "x.png", k=1)
    store.append(sample(q, 0, 1))
    assert mme_realworld_summary([(q, [store.get(("vstar", "v0", 0))])]) is None
    assert "mme_realworld" not in build_report([q], store, EvalConfig(), "p")["benchmarks"]["vstar"]
    assert mme_section(None) == []


def test_report_md_prints_perception_reasoning_avg_c_and_subtasks(tmp_path: Path):
    questions, store = questions_and_store(tmp_path)
    mme = build_report(questions, store, EvalConfig(), "p")["benchmarks"]["mme"]["mme_realworld"]
    summary = {**score_summary([[1, 0]], [["A", "B"]], 2), "excluded": 0, "missing": 0, "behaviour": {"samples": 0}}
    report = {
        "policy": "p", "config_hash": "h", "store": "samples-h.jsonl", "config": {"max_turns": 12, "max_images": 12},
        "protocol": {"name": "rule", "description": "rule scorers", "note": "not comparable", "comparable_to_paper": False},
        "benchmarks": {"mme": {"overall": summary, "data_sources": {"mme_realworld": summary}, "categories": {},
                               "mme_realworld": mme}},
    }
    lines = render_markdown(report).splitlines()
    start = lines.index("### MME-RealWorld: Perception / Reasoning (official aggregation)")
    assert lines[start + 2].startswith("Overall 62.5 over 4 questions, item-weighted")
    assert lines[start + 4:start + 12] == [
        "| Task | Subtask | Questions | Accuracy |",
        "|---|---|---:|---:|",
        "| Perception | all | 3 | 50.0 |",
        "| Perception | Avg-C | 2 subtasks | 37.5 |",
        "| Perception | Monitoring | 1 | 0.0 |",
        "| Perception | Remote Sensing | 2 | 75.0 |",
        "| Reasoning | all | 1 | 100.0 |",
        "| Reasoning | Avg-C | 1 subtask | 100.0 |",
    ]
