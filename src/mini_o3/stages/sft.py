"""SFT stage: sealed cold-start data + base model → sealed SFT model (LLaMA-Factory).

Outputs under ``out_uri``: ``model/`` (the HF model folder, no ``checkpoint-*`` resume points)
and ``run/`` (training yaml, ``sft_run.json``, ``train.log``, ``loss_curve.png``, trainer
log/state, ``stage.json``); ``model/`` is sealed before ``run/``.
"""

from __future__ import annotations

import json
import shutil

from mini_o3 import storage

from .common import (
    StageResult,
    console,
    copy_files,
    fetch,
    library_env,
    numeric,
    resolve_model,
    seal,
    stage_tracker,
    work_dir,
    write_result,
)
from .requests import SFTRequest

RUN_FILES = ("llamafactory_sft.yaml", "dataset_info.json", "sft_run.json", "train.log", "loss_curve.png")
MODEL_RECORDS = ("trainer_log.jsonl", "trainer_state.json", "all_results.json", "train_results.json")


def sft_stage(request: SFTRequest, *, work: str | None = None, progress: bool = True) -> StageResult:
    """Train ``request.model`` (sealed URI or hub id) on the cold-start data at ``request.data_uri``."""
    from mini_o3.sft import SFTConfig, run_sft

    data_uri, model, out_uri, overrides = request.data_uri, request.model, request.out_uri, request.overrides
    SFTConfig().with_overrides(list(overrides))  # bad overrides fail before any download
    params = {"data_uri": data_uri, "model": model, "overrides": list(overrides)}
    with work_dir("sft", work) as wd, stage_tracker("sft", request.tracking, params) as tracker:
        console.rule("[bold]SFT")
        data = fetch(data_uri, wd / "inputs" / "data", progress=progress)
        base = resolve_model(model, wd / "inputs" / "model", progress=progress)
        with library_env():
            result = run_sft(data, str(base), wd / "run", None, list(overrides), progress=progress)
        out = wd / "out"
        shutil.rmtree(out, ignore_errors=True)  # a kept work folder may hold an earlier attempt's
        model_out = copy_files(result.model_dir, out / "model", skip_dirs=("checkpoint-*", "runs"))
        run_out = copy_files(result.run_dir, out / "run", RUN_FILES)
        copy_files(result.model_dir, run_out, MODEL_RECORDS)
        metrics = numeric({"global_step": result.global_step, "final_loss": result.final_loss, "seconds": result.seconds})
        stage = StageResult("sft", out_uri, model_uri=storage.join(out_uri, "model"), metrics=metrics,
                            outputs={"model": storage.join(out_uri, "model"), "run": storage.join(out_uri, "run")},
                            info={"adjustments": [str(a) for a in result.adjustments]})
        write_result(stage, run_out)
        seal(model_out, stage.outputs["model"], progress=progress)
        seal(run_out, stage.outputs["run"], progress=progress)
        tracker.log_params({"sft_config": json.dumps(result.config.model_dump(mode="json"), sort_keys=True)[:6000]})
        for record in _loss_records(run_out / "trainer_log.jsonl"):
            tracker.log_metrics({"train/loss": record["loss"]}, step=record["current_steps"])
        tracker.log_metrics(metrics)
        if (run_out / "loss_curve.png").is_file():
            tracker.log_artifact(run_out / "loss_curve.png")
    return stage


def _loss_records(path) -> list[dict]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if isinstance(r.get("loss"), (int, float)) and "current_steps" in r]
