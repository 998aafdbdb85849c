"""``BENCHMARKS``: every benchmark ``prepare_bench`` knows → converter, default split, data
source(s) and the usual hub dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

from . import hrbench, mme_realworld, synthetic, visualprobe, vstar
from ..schemas import SYNTHETIC_DATA_SOURCES
from .draft import ConvertContext, SourceRows

Split = Literal["train", "val"]


@dataclass(frozen=True)
class BenchSpec:
    """How to prepare one benchmark."""

    name: str
    convert: Callable[[ConvertContext], SourceRows]
    split: Split  # default split: the file name of the outputs (<split>.parquet / .json)
    data_sources: tuple[str, ...]  # the first is the default; see data_source_for
    hub_id: Optional[str]  # the usual --source (a local folder or file works too)
    allow_patterns: Optional[tuple[str, ...]] = None  # what to download from hub_id
    description: str = ""


#: Sets already in the Mini-o3 layout: name, split, data source, hub id, what.
_MINI_O3_LAYOUT: tuple[tuple[str, Split, str, str, str], ...] = (
    ("visualprobe_train", "train", "visual_probe_train", "Mini-o3/VisualProbe_train", "VisualProbe RL train (~4K)"),
    ("visualprobe_easy", "val", "visual_probe_easy", "Mini-o3/VisualProbe_Easy", "VisualProbe Easy (141)"),
    ("visualprobe_medium", "val", "visual_probe_medium", "Mini-o3/VisualProbe_Medium", "VisualProbe Medium (268)"),
    ("visualprobe_hard", "val", "visual_probe_hard", "Mini-o3/VisualProbe_Hard", "VisualProbe Hard (106)"),
    ("deepeyes_train_4k", "train", "deepeyes_train", "Mini-o3/DeepEyes_train_4K", "DeepEyes RL subset (~4K)"),
)

BENCHMARKS: dict[str, BenchSpec] = {
    spec.name: spec
    for spec in (
        *(BenchSpec(n, visualprobe.convert, split, (ds,), hub, None, what) for n, split, ds, hub, what in _MINI_O3_LAYOUT),
        BenchSpec("vstar", vstar.convert, "val", ("vstar_bench",), "craigwu/vstar_bench", None,
                  "V* Bench (191 mc; test_questions.jsonl or raw per-image JSONs)"),
        BenchSpec("hrbench_4k", hrbench.convert, "val", ("hrbench_4k",), "DreamMr/HR-Bench", ("*4k*.parquet",),
                  "HR-Bench 4K (800 rows = 200 questions x 4 option cycles)"),
        BenchSpec("hrbench_8k", hrbench.convert, "val", ("hrbench_8k",), "DreamMr/HR-Bench", ("*8k*.parquet",),
                  "HR-Bench 8K (800 rows = 200 questions x 4 option cycles)"),
        BenchSpec("mme_realworld", mme_realworld.convert, "val", ("mme_realworld", "mme_realworld_lite"),
                  "yifanzhang114/MME-RealWorld-Lmms-eval", None,
                  "MME-RealWorld full or Lite (config.mme_realworld_variant; Lite hub id: "
                  "yifanzhang114/MME-RealWorld-lite-lmms-eval; also a local copy of yifanzhang114/MME-RealWorld-Base64 "
                  "(JSON shards, Lite TSV) or of yifanzhang114/MME-RealWorld (JSON + images)), English only by default"),
        BenchSpec("synthetic", synthetic.convert, "val", SYNTHETIC_DATA_SOURCES, None,
                  None, "re-emit a folder written by mini_o3.data.synthetic.generate (its train and val splits)"),
    )
}


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
