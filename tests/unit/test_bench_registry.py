"""The benchmark registry is the one home of each benchmark's facts: the evaluator's k defaults,
the report's paper table and the rule scorer are views of its ``BenchSpec`` entries."""

from pathlib import Path

from mini_o3.data.bench.registry import (
    BENCHMARKS, PAPER_K, PAPER_MODELS, PAPER_TABLE, paper_columns, paper_rows, scorer_for,
)
from mini_o3.evaluate.config import EvalConfig


def test_paper_k_is_table_1_caption_and_the_eval_default():
    assert PAPER_K == {"visual_probe": 32, "vstar": 32, "hrbench": 8, "mme_realworld": 1}
    assert EvalConfig().k_by_family == PAPER_K
    for spec in BENCHMARKS.values():  # every data source of a family gets its k
        for source in spec.data_sources:
            assert EvalConfig().k_for(source) == (spec.default_k or 1), source


def test_paper_table_columns_rows_and_labels():
    assert list(paper_columns().values()) == ["VP-hard", "VP-medium", "VP-easy", "V*", "HR-4K", "HR-8K", "MME-RW"]
    rows = paper_rows()
    assert list(rows) == list(PAPER_MODELS) and rows["Mini-o3 (paper)"]["visual_probe_hard"] == 48.0
    assert rows["Qwen2.5-VL-7B-Instruct (paper)"]["mme_realworld"] == 57.3
    for name, spec in BENCHMARKS.items():  # a labelled benchmark is in the table with every model's number
        assert (spec.label is not None) == (name in PAPER_TABLE) == bool(spec.paper), name
        assert not spec.paper or set(spec.paper) == set(PAPER_MODELS)


def test_every_reference_data_source_has_a_spec_and_the_scorer_follows_the_family():
    sources = {source: spec for spec in BENCHMARKS.values() for source in spec.data_sources}
    reference = {"visual_probe_train", "deepeyes_train", "visual_probe_easy", "visual_probe_medium",
                 "visual_probe_hard", "vstar_bench"}  # the data sources the reference reward dispatcher knows
    assert reference <= set(sources)
    assert scorer_for("mme_realworld") == scorer_for("mme_realworld_lite") == "mme_realworld"
    assert scorer_for("vstar_bench") == scorer_for("synthetic_easy") == scorer_for("custom") == "answer_type"


def test_the_paper_k_help_text_comes_from_the_bench_specs():
    """Help texts state each benchmark's default k from its BenchSpec (not restated by hand)."""
    from mini_o3.data.bench.registry import BENCHMARKS, PAPER_TABLE, paper_k_text
    from mini_o3.kfp.client import package_path, pipeline_parameters

    text = paper_k_text()
    for group in text.split("; "):
        k, labels = group.split(" ", 1)
        for label in labels.split(", "):
            spec = next(BENCHMARKS[n] for n in PAPER_TABLE if (BENCHMARKS[n].label or n) == label)
            assert spec.default_k == int(k)
    assert sum(len(g.split(", ")) for g in text.split("; ")) == len(PAPER_TABLE)
    root = Path(__file__).resolve().parents[2]
    for pipeline, key in (("train", "p4_eval_k"), ("evaluate", "k")):
        description = " ".join(pipeline_parameters(package_path(pipeline, root))[key]["description"].split())
        assert f"({text})" in description
