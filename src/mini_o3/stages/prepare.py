"""Data stages: the cold-start SFT set and benchmark collections (RL train / val, evaluation).

A *benchmark collection* is one sealed folder holding one prepared benchmark folder per name
(``<collection>/<name>/{train,val}.parquet, data/``): image paths are relative to the collection
root, so the folder travels as one artifact. ``synthetic`` (without a source) generates the
seeded synthetic set (``SyntheticSpec``) instead of converting a download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mini_o3.data.synthetic import SynthConfig

from .common import (
    StageError,
    StageResult,
    Tracking,
    basename,
    console,
    seal,
    stage_tracker,
    work_dir,
    write_result,
)

#: The source value that means "generate the synthetic set" for the cold-start stage.
SYNTHETIC = "synthetic"


class SyntheticSpec(BaseModel):
    """The synthetic set both data stages generate for ``synthetic`` (same spec → same data)."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = Field(64, ge=1, description="train questions (also the cold-start trajectories)")
    n_test: int = Field(32, ge=1, description="test questions (val.parquet)")
    seed: int = Field(0, ge=0, description="generator seed")
    config: SynthConfig = Field(default_factory=SynthConfig, description="canvas, difficulty and category settings")

    @classmethod
    def from_overrides(cls, overrides: Sequence[str]) -> SyntheticSpec:
        from mini_o3.overrides import apply_overrides

        return apply_overrides(cls(), list(overrides), label="synthetic data setting")


def parse_benchmarks(spec: str) -> list[tuple[str, str | None]]:
    """``"vstar,visualprobe_hard=/data/VP"`` → ``[("vstar", None), ("visualprobe_hard", "/data/VP")]``."""
    from mini_o3.data.bench import BENCHMARKS

    items: list[tuple[str, str | None]] = []
    for raw in (spec or "").split(","):
        raw = raw.strip()
        if not raw:
            continue
        name, sep, source = raw.partition("=")
        name = name.strip()
        if name not in BENCHMARKS:
            raise StageError(f"benchmarks {spec!r}: unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
        if sep and not source.strip():
            raise StageError(f"benchmarks {spec!r}: {name}= has an empty source")
        items.append((name, source.strip() or None))
    if not items:
        raise StageError(f"benchmarks {spec!r}: no benchmark names (comma-separated, optionally name=source)")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise StageError(f"benchmarks {spec!r}: a name is repeated")
    return items


def _generate(spec: SyntheticSpec, out: Path, *, progress: bool) -> None:
    from mini_o3.data.synthetic import generate

    generate(spec.config, out, n_train=spec.n_train, n_test=spec.n_test, seed=spec.seed, overwrite=True, progress=progress)


def prepare_coldstart_stage(
    source: str,
    out_uri: str,
    *,
    overrides: Sequence[str] = (),
    synthetic: Sequence[str] = (),
    tracking: Tracking = Tracking(),
    work: str | None = None,
    progress: bool = True,
) -> StageResult:
    """Cold-start parquet (hub id, folder, file, or ``synthetic``) → sealed LLaMA-Factory data
    folder at ``out_uri`` (relocatable: image paths relative to it)."""
    from mini_o3.data.coldstart import ColdstartPrepConfig, prepare_coldstart
    from mini_o3.overrides import apply_overrides

    config = apply_overrides(ColdstartPrepConfig(), [*overrides, "image_paths=relative"], label="cold-start setting")
    spec = SyntheticSpec.from_overrides(synthetic) if source == SYNTHETIC else None
    params = {"source": source, **config.model_dump(mode="json"), **({"synthetic": spec.model_dump(mode="json")} if spec else {})}
    with work_dir("prepare-coldstart", work) as wd, stage_tracker("prepare_coldstart", tracking, params) as tracker:
        console.rule("[bold]prepare cold-start data")
        resolved = source
        if spec is not None:
            _generate(spec, wd / "synthetic", progress=progress)
            resolved = str(wd / "synthetic" / "coldstart")
        out = wd / basename(out_uri)
        summary = prepare_coldstart(resolved, out, config, progress=progress)
        metrics = {"rows_in": float(summary.rows_in), "rows_out": float(summary.rows_out),
                   "rows_rejected": float(summary.rows_rejected)}
        result = StageResult("prepare_coldstart", out_uri, metrics=metrics, outputs={"data": out_uri})
        write_result(result, out)
        seal(out, out_uri, progress=progress)
        tracker.log_metrics(metrics)
    return result


def prepare_bench_stage(
    benchmarks: str,
    out_uri: str,
    *,
    overrides: Sequence[str] = (),
    synthetic: Sequence[str] = (),
    tracking: Tracking = Tracking(),
    work: str | None = None,
    progress: bool = True,
    stage: str = "prepare_bench",
) -> StageResult:
    """Benchmarks (``name[=source],...``) → one sealed collection at ``out_uri``."""
    from mini_o3.data.bench import BENCHMARKS, BenchPrepConfig, prepare_bench
    from mini_o3.overrides import apply_overrides

    items = parse_benchmarks(benchmarks)
    config = apply_overrides(BenchPrepConfig(), list(overrides), label="benchmark setting")
    spec = SyntheticSpec.from_overrides(synthetic)
    params = {"benchmarks": benchmarks, **config.model_dump(mode="json")}
    if any(n == SYNTHETIC and s is None for n, s in items):
        params["synthetic"] = spec.model_dump(mode="json")
    with work_dir(stage.replace("_", "-"), work) as wd, stage_tracker(stage, tracking, params) as tracker:
        console.rule(f"[bold]prepare benchmarks: {', '.join(n for n, _ in items)}")
        collection = wd / basename(out_uri)
        collection.mkdir(parents=True, exist_ok=True)
        metrics: dict[str, float] = {}
        for name, source in items:
            folder = collection / name
            if name == SYNTHETIC and source is None:
                _generate(spec, folder, progress=progress)
                rows = spec.n_train + spec.n_test
            else:
                source = source or BENCHMARKS[name].hub_id
                if source is None:
                    raise StageError(f"benchmark {name!r} has no default source; give one as {name}=SOURCE")
                summary = prepare_bench(name, source, folder, config.model_copy(update={"overwrite": True}), progress=progress)
                rows = summary.rows_out
                metrics[f"rejected/{name}"] = float(summary.rejected)
            metrics[f"rows/{name}"] = float(rows)
        result = StageResult(stage, out_uri, metrics=metrics, outputs={"data": out_uri},
                             info={"benchmarks": [n for n, _ in items]})
        write_result(result, collection)
        seal(collection, out_uri, progress=progress)
        tracker.log_metrics(metrics)
    return result
