"""``BENCHMARKS``: one ``BenchSpec`` per benchmark ``prepare_bench`` knows, the single home of its
facts: converter, default split, data source(s), hub dataset, k family and paper k, rule scorer,
report label and paper Table 1 numbers. ``PAPER_K``, ``paper_columns``, ``paper_rows`` and
``scorer_for`` are views of it (the evaluator's k defaults, the report's table, the scorer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

from . import hrbench, mme_realworld, synthetic, visualprobe, vstar
from ..schemas import SYNTHETIC_DATA_SOURCES
from .draft import ConvertContext, SourceRows

Split = Literal["train", "val"]
#: Rule scorers: ``answer_type`` = the mc letter rule or normalised free-form match by the record's
#: answer type; ``mme_realworld`` = MME-RealWorld's official letter rule on the record's choices.
Scorer = Literal["answer_type", "mme_realworld"]
#: Paper Table 1 rows, in order (7B models; percent).
PAPER_MODELS = ("Mini-o3 (paper)", "Qwen2.5-VL-7B-Instruct (paper)")


@dataclass(frozen=True)
class BenchSpec:
    """One benchmark: how to prepare it and what the evaluator and the report know about it."""

    name: str
    convert: Callable[[ConvertContext], SourceRows]
    split: Split  # default split: the file name of the outputs (<split>.parquet / .json)
    data_sources: tuple[str, ...]  # the first is the default; see data_source_for
    hub_id: Optional[str]  # the usual --source (a local folder or file works too)
    allow_patterns: Optional[tuple[str, ...]] = None  # what to download from hub_id
    description: str = ""
    #: data-source prefix that picks the paper k (``EvalConfig.k_by_family``) and the scorer
    family: Optional[str] = None
    #: the paper's k for the family (Table 1 caption: Avg@32 VP / V*, Avg@8 HR, Avg@1 MME-RW)
    default_k: Optional[int] = None
    scorer: Scorer = "answer_type"
    #: report column label of ``data_sources[0]`` (paper Table 1 headers)
    label: Optional[str] = None
    #: paper Table 1 numbers of ``data_sources[0]``: model row (``PAPER_MODELS``) → percent
    paper: dict[str, float] = field(default_factory=dict)


def _paper(mini_o3: float, qwen: float) -> dict[str, float]:
    return dict(zip(PAPER_MODELS, (mini_o3, qwen)))


_VP = dict(family="visual_probe", default_k=32)
#: Sets already in the Mini-o3 layout: name, split, data source, hub id, what, label, paper numbers.
_MINI_O3_LAYOUT: tuple[tuple[str, Split, str, str, str, Optional[str], dict[str, float]], ...] = (
    ("visualprobe_train", "train", "visual_probe_train", "Mini-o3/VisualProbe_train", "VisualProbe RL train (~4K)",
     None, {}),
    ("visualprobe_easy", "val", "visual_probe_easy", "Mini-o3/VisualProbe_Easy", "VisualProbe Easy (141)",
     "VP-easy", _paper(67.0, 39.1)),
    ("visualprobe_medium", "val", "visual_probe_medium", "Mini-o3/VisualProbe_Medium", "VisualProbe Medium (268)",
     "VP-medium", _paper(50.4, 26.0)),
    ("visualprobe_hard", "val", "visual_probe_hard", "Mini-o3/VisualProbe_Hard", "VisualProbe Hard (106)",
     "VP-hard", _paper(48.0, 23.9)),
)

BENCHMARKS: dict[str, BenchSpec] = {
    spec.name: spec
    for spec in (
        *(BenchSpec(n, visualprobe.convert, split, (ds,), hub, None, what, **_VP, label=label, paper=paper)
          for n, split, ds, hub, what, label, paper in _MINI_O3_LAYOUT),
        BenchSpec("deepeyes_train_4k", visualprobe.convert, "train", ("deepeyes_train",), "Mini-o3/DeepEyes_train_4K",
                  None, "DeepEyes RL subset (~4K)"),
        BenchSpec("vstar", vstar.convert, "val", ("vstar_bench",), "craigwu/vstar_bench", None,
                  "V* Bench (191 mc; test_questions.jsonl or raw per-image JSONs)",
                  family="vstar", default_k=32, label="V*", paper=_paper(88.2, 75.5)),
        BenchSpec("hrbench_4k", hrbench.convert, "val", ("hrbench_4k",), "DreamMr/HR-Bench", ("*4k*.parquet",),
                  "HR-Bench 4K (800 rows = 200 questions x 4 option cycles)",
                  family="hrbench", default_k=8, label="HR-4K", paper=_paper(77.5, 68.2)),
        BenchSpec("hrbench_8k", hrbench.convert, "val", ("hrbench_8k",), "DreamMr/HR-Bench", ("*8k*.parquet",),
                  "HR-Bench 8K (800 rows = 200 questions x 4 option cycles)",
                  family="hrbench", default_k=8, label="HR-8K", paper=_paper(73.3, 62.7)),
        BenchSpec("mme_realworld", mme_realworld.convert, "val", ("mme_realworld", "mme_realworld_lite"),
                  "yifanzhang114/MME-RealWorld-Lmms-eval", None,
                  "MME-RealWorld full or Lite (config.mme_realworld_variant; Lite hub id: "
                  "yifanzhang114/MME-RealWorld-lite-lmms-eval; also a local copy of yifanzhang114/MME-RealWorld-Base64 "
                  "(JSON shards, Lite TSV) or of yifanzhang114/MME-RealWorld (JSON + images)), English only by default",
                  family="mme_realworld", default_k=1, scorer="mme_realworld", label="MME-RW", paper=_paper(65.5, 57.3)),
        BenchSpec("synthetic", synthetic.convert, "val", SYNTHETIC_DATA_SOURCES, None,
                  None, "re-emit a folder written by mini_o3.data.synthetic.generate (its train and val splits)"),
    )
}

#: Paper Table 1 column order (benchmark names).
PAPER_TABLE = ("visualprobe_hard", "visualprobe_medium", "visualprobe_easy", "vstar", "hrbench_4k", "hrbench_8k",
               "mme_realworld")


def _family_k() -> dict[str, int]:
    out: dict[str, int] = {}
    for spec in BENCHMARKS.values():
        if spec.family is not None and spec.default_k is not None:
            if out.setdefault(spec.family, spec.default_k) != spec.default_k:
                raise ValueError(f"benchmark family {spec.family!r} has two default k")
    return out


#: Paper k per data-source family, matched by prefix of ``BenchRecord.data_source``.
PAPER_K: dict[str, int] = _family_k()


def paper_k_text() -> str:
    """The paper's k per benchmark for help texts: ``32 VP-hard, VP-medium, VP-easy, V*; 8 HR-4K, ...``."""
    by_k: dict[int, list[str]] = {}
    for name in PAPER_TABLE:
        spec = BENCHMARKS[name]
        if spec.default_k is not None:
            by_k.setdefault(spec.default_k, []).append(spec.label or name)
    return "; ".join(f"{k} {', '.join(labels)}" for k, labels in by_k.items())


def paper_columns() -> dict[str, str]:
    """Paper Table 1 columns: data source → label, in the paper's order."""
    return {BENCHMARKS[name].data_sources[0]: BENCHMARKS[name].label or name for name in PAPER_TABLE}


def paper_rows() -> dict[str, dict[str, float]]:
    """Paper Table 1 rows: model → data source → percent."""
    return {model: {BENCHMARKS[name].data_sources[0]: BENCHMARKS[name].paper[model] for name in PAPER_TABLE}
            for model in PAPER_MODELS}


def scorer_for(data_source: str) -> Scorer:
    """The rule scorer of a data source: its longest matching family's, else ``answer_type``."""
    matches = [spec for spec in BENCHMARKS.values() if spec.family and data_source.startswith(spec.family)]
    return max(matches, key=lambda spec: len(spec.family or "")).scorer if matches else "answer_type"


def get_spec(name: str) -> BenchSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}") from None


def data_source_for(spec: BenchSpec, mme_realworld_variant: str) -> str:
    """The data source rows get by default (MME-RealWorld: by variant; synthetic: per row)."""
    if spec.name == "mme_realworld" and mme_realworld_variant == "lite":
        return spec.data_sources[1]
    return spec.data_sources[0]
