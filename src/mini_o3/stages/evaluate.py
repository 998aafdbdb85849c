"""Evaluation stage: sealed model + benchmark collections → sealed Avg@k report folder.

Backends: ``vllm`` (serve the model with vLLM for the run: the GPU path), ``local`` (the batched
HF policy in this process: CPU runs and tests) or ``openai:URL[#model]`` (an already served
policy; ``model_uri`` is then only recorded). The output folder is ``run_eval``'s (report.json,
report.md, plots, viewer.html, the sample store) plus ``stage.json``. Like ``mini-o3 eval`` exiting 1,
the stage fails (``StageError``) when errored samples exceed ``max_error_rate`` or the run stopped
early, after sealing that folder, so a failed run's report can be read.

Scoring follows ``EvalConfig.protocol`` (default ``paper``: the LLM judge on every sample). A
pipeline without judge credentials (``judge=False``, or none in the environment) falls back to
``rule`` explicitly: a warning, ``protocol="rule"`` and the reason in stage.json, and a report that
says its numbers are not comparable to the paper's. Asking for ``protocol=paper`` in the overrides
without a judge fails instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mini_o3.redact import redact_text

from .common import (
    StageError,
    StageResult,
    basename,
    console,
    fetch_datasets,
    library_env,
    resolve_model,
    seal,
    stage_tracker,
    work_dir,
    write_result,
)
from .requests import EvalRequest

BACKENDS = ("vllm", "local")
REPORT_FILES = ("report.md", "report.json", "avg_at_k.png", "pass_at_k.png", "turns.png", "viewer.html")


def eval_metrics(report: dict) -> dict[str, float]:
    """Avg@k, SE and maj@k per benchmark (names valid for both KFP Metrics and MLflow)."""
    out: dict[str, float] = {}
    for bench, data in report["benchmarks"].items():
        overall = data["overall"]
        for key in ("avg_at_k", "se", "maj_at_k"):
            value = overall.get(key)
            if isinstance(value, (int, float)):
                out[f"{key}/{bench}"] = float(value)
    return out


def scoring_protocol(config: Any, judge: bool | None, overrides: Sequence[str]) -> tuple[Any, str | None]:
    """(config with the protocol this stage scores under, the reason for a rule fallback or None).

    ``judge``: True = the pipeline supplies judge credentials, False = it has none, None = look for
    them in the environment (``judge.client.missing_credentials``).
    """
    from mini_o3.judge.client import missing_credentials

    if config.protocol == "rule":
        return config, None
    missing = missing_credentials(config.judge)
    if judge is True or (judge is None and not missing):
        return config, None
    reason = ("this stage was given no judge (judge=False: no judge Secret or the judge switched off)" if judge is False
              else f"judge environment variable(s) {', '.join(missing)} not set")
    if any(item.partition("=")[0].strip() == "protocol" for item in overrides):
        raise StageError(f"eval setting protocol=paper needs the LLM judge, but {reason}; "
                         "give the judge credentials or set protocol=rule")
    return config.model_copy(update={"protocol": "rule"}), f"paper protocol needs the LLM judge, but {reason}"


def eval_config(overrides: Sequence[str], k: int | None, judge: bool | None) -> tuple[Any, str | None]:
    """(EvalConfig, rule-fallback reason) this stage evaluates with: overrides, ``k``, protocol."""
    from mini_o3.evaluate.runner import resolve_config

    config = resolve_config(None, [*overrides, *([f"k={k}"] if k else [])])
    return scoring_protocol(config, judge, overrides)


def eval_stage(request: EvalRequest, *, work: str | None = None, progress: bool = True) -> StageResult:
    """Avg@k of the model at ``request.model_uri`` on every benchmark of ``request.bench_uris``
    (``gpus``: the vLLM server's GPUs, tensor x data parallel, see ``serve.parallelism``; ``judge``:
    see ``scoring_protocol``)."""
    from mini_o3.evaluate.runner import EvalError, run_eval

    model_uri, bench_uris, out_uri, overrides = request.model_uri, request.bench_uris, request.out_uri, request.overrides
    k, backend, judge, gpus = request.k, request.backend, request.judge, request.gpus

    if backend not in BACKENDS and not backend.startswith("openai:"):
        raise StageError(f"eval backend {redact_text(backend)!r} is unknown; expected vllm, local or openai:URL[#model]")
    if not bench_uris:
        raise StageError("eval stage needs at least one benchmark URI")
    config, fallback = eval_config(overrides, k, judge)  # bad overrides fail before any download
    params = {"model_uri": model_uri, "bench_uris": list(bench_uris), "k": k, "backend": backend,
              "overrides": list(overrides), "judge": judge, "gpus": gpus, "protocol": config.protocol}
    with work_dir("eval", work) as wd, stage_tracker("evaluate", request.tracking, params) as tracker:
        console.rule(f"[bold]evaluate ({redact_text(backend)}, protocol {config.protocol})")
        if fallback:
            console.print(f"[yellow]warning:[/yellow] {fallback}: scoring with protocol=rule (rule scorers only); "
                          "the report's numbers are not comparable to the paper's")
        benches = fetch_datasets(bench_uris, wd / "inputs" / "bench", "val", progress=progress)
        out = wd / basename(out_uri)
        try:
            with library_env():
                if backend.startswith("openai:"):
                    result = run_eval(backend, benches, out, config, progress=progress)
                else:
                    model = resolve_model(model_uri, wd / "inputs" / "model", progress=progress)
                    # vllm: serves the model for the run; its spec names the model (resume never mixes models)
                    result = run_eval(f"{backend}:{model}", benches, out, config, progress=progress, gpus=gpus)
        except EvalError as exc:
            raise StageError(f"evaluation of {model_uri!r}: {exc}") from exc
        metrics = eval_metrics(result.report)
        stage = StageResult("evaluate", out_uri, model_uri=model_uri, metrics=metrics, outputs={"eval": out_uri},
                            info={"benchmarks": sorted(result.report["benchmarks"]), "config_hash": result.config_hash,
                                  "k": {b: d["overall"]["k"] for b, d in result.report["benchmarks"].items()},
                                  "protocol": config.protocol, "protocol_fallback": fallback})
        write_result(stage, out)
        seal(out, out_uri, progress=progress)
        tracker.log_metrics(metrics)
        for name in REPORT_FILES:
            if (out / name).is_file():
                tracker.log_artifact(out / name, artifact_path="eval")
        problem = result.failure()  # error rate above max_error_rate, or stopped early: as mini-o3 eval exits 1
        if problem:
            raise StageError(f"evaluation of {model_uri!r}: {problem} (the report is sealed at {out_uri})")
    return stage
