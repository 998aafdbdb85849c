"""RL stage: sealed policy + data collections → sealed RL policy (GRPO).

Engines: ``local`` (``mini_o3.rl.local``, in this process: CPU / one GPU) or ``verl``
(``mini_o3.rl.verl``: joins the Ray cluster this process runs in, e.g. as the entrypoint of a
KubeRay RayJob, with ``nnodes`` × ``gpus_per_node`` GPUs; multi-node needs ``MINI_O3_WORK_DIR``
on storage every Ray node mounts, since verl workers read the model and data by path).

Outputs under ``out_uri``: ``model/`` (the last checkpoint's HF files, without optimizer and RNG
state) and ``run/`` (``metrics.jsonl``, ``rl_config.json``, rollouts, validation dumps,
``stage.json``); ``model/`` is sealed before ``run/``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Literal

from mini_o3 import storage

from .common import (
    StageError,
    StageResult,
    console,
    copy_files,
    fetch_datasets,
    library_env,
    numeric,
    resolve_model,
    seal,
    stage_tracker,
    work_dir,
    write_result,
)
from .requests import RLRequest

Engine = Literal["local", "verl"]
ENGINES = ("local", "verl")
#: Checkpoint files that are training state, not the policy.
STATE_FILES = ("optimizer.pt", "rng.pt", "*.distcp", "optim_*", "extra_state_*")
#: Stage metrics (the last value of each): reference engine val/ rollout/ actor/, verl val-core/ critic/score/.
STAGE_METRICS = ("val/", "rollout/", "actor/", "val-core/", "critic/score/")
RUN_ENTRIES = ("metrics.jsonl", "rl_config.json", "rollouts", "validation")
#: verl's generated configs and command (not its converted data: images embedded, large).
VERL_RECORDS = ("command.json", "rl_config.json", "agent_loops.yaml", "crop_tool.yaml")


def rl_stage(request: RLRequest, *, work: str | None = None, progress: bool = True) -> StageResult:
    """GRPO from ``request.model_uri`` on the train collections, validating on the val collections."""
    from mini_o3.rl.config import RLConfig

    engine, model_uri, out_uri, overrides = request.engine, request.model_uri, request.out_uri, request.overrides
    train_uris, val_uris = request.train_uris, request.val_uris
    nnodes, gpus_per_node = request.nnodes, request.gpus_per_node

    if engine not in ENGINES:
        raise StageError(f"RL engine {engine!r} is unknown; expected one of {', '.join(ENGINES)}")
    if not train_uris:
        raise StageError("RL stage needs at least one train data URI")
    config = RLConfig().with_overrides(list(overrides))  # bad overrides fail before any download
    params = {"engine": engine, "model_uri": model_uri, "train_uris": list(train_uris), "val_uris": list(val_uris),
              "overrides": list(overrides), "nnodes": nnodes, "gpus_per_node": gpus_per_node}
    with work_dir("rl", work) as wd, stage_tracker("rl", request.tracking, params) as tracker:
        console.rule(f"[bold]RL ({engine} engine)")
        model = resolve_model(model_uri, wd / "inputs" / "model", progress=progress)
        train = fetch_datasets(train_uris, wd / "inputs" / "train", "train", progress=progress)
        val = fetch_datasets(val_uris, wd / "inputs" / "val", "val", progress=progress) if val_uris else []
        run_dir = wd / "run"
        with library_env():
            if engine == "local":
                from mini_o3.rl.local import run_rl_local

                result = run_rl_local(model, train, val, run_dir, config, (), progress=progress)
                info = {"global_step": result.global_step, "total_steps": result.total_steps}
                final = result.last_checkpoint
            else:
                from mini_o3.rl.verl import run_rl_verl
                from mini_o3.rl.verl.command import METRICS_FILE

                verl = run_rl_verl(str(model), train, val, run_dir, config, (), nnodes=nnodes,
                                   n_gpus_per_node=gpus_per_node, progress=progress)
                if verl.returncode not in (0, None):
                    raise StageError(f"verl exited with code {verl.returncode}; command: {' '.join(verl.command)}")
                final = latest_hf_checkpoint(run_dir)  # verl's command saves hf_model with each checkpoint
                verl_metrics(run_dir / METRICS_FILE, run_dir / "metrics.jsonl")
                info = {"command": verl.command}
        if final is None:
            raise StageError(f"RL run in {run_dir} saved no checkpoint; set save_freq > 0")
        out = wd / "out"
        shutil.rmtree(out, ignore_errors=True)  # a kept work folder may hold an earlier attempt's
        model_out = copy_files(final, out / "model", skip_dirs=STATE_FILES)
        run_out = copy_files(run_dir, out / "run", RUN_ENTRIES)
        if (run_dir / "verl").is_dir():
            copy_files(run_dir / "verl", run_out / "verl", VERL_RECORDS)
        (run_out / "checkpoint.json").write_text(json.dumps({"checkpoint": final.name, **info}, default=str) + "\n")
        history = _metrics(run_dir / "metrics.jsonl")
        last = numeric({**{k: v for rec in history for k, v in rec.items() if k != "step"}})
        metrics = {k: v for k, v in last.items() if k.startswith(STAGE_METRICS)}
        metrics["global_step"] = float(info.get("global_step", _step_of(final)))
        stage = StageResult("rl", out_uri, model_uri=storage.join(out_uri, "model"), metrics=metrics,
                            outputs={"model": storage.join(out_uri, "model"), "run": storage.join(out_uri, "run")},
                            info={"engine": engine, "checkpoint": final.name})
        write_result(stage, run_out)
        seal(model_out, stage.outputs["model"], progress=progress)
        seal(run_out, stage.outputs["run"], progress=progress)
        tracker.log_params({"rl_config": recorded_config(run_dir, config)})
        for record in history:
            step = int(record.get("step", 0))
            tracker.log_metrics(_mlflow_names(numeric({k: v for k, v in record.items() if k != "step"})), step=step)
    return stage


def recorded_config(run_dir: Path, config: object) -> str:
    """The config the engine ran with, as compact JSON (the MLflow param, cut to MLflow's 6000
    characters as the SFT stage's): its ``rl_config.json`` (reference engine: ``run_dir``, verl:
    ``run_dir/verl``; model and data actually read, ``RLConfig.with_inputs``), else ``config``."""
    for path in (run_dir / "rl_config.json", run_dir / "verl" / "rl_config.json"):
        if path.is_file():
            return json.dumps(json.loads(path.read_text()), sort_keys=True)[:6000]
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)[:6000]


def verl_metrics(source: Path, dest: Path) -> int:
    """verl's file-logger lines (``{"step", "data"}``) → our ``metrics.jsonl`` (flat, with ``step``)."""
    if not source.is_file():
        return 0
    records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    dest.write_text("".join(json.dumps({"step": r.get("step", 0), **r.get("data", {})}) + "\n" for r in records))
    return len(records)


def latest_hf_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``global_step_N`` HF folder (itself or its ``actor/huggingface``) under ``run_dir``."""
    candidates = []
    for path in run_dir.rglob("global_step_*"):
        step = _step_of(path)
        for folder in (path, path / "actor" / "huggingface"):
            if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
                candidates.append((step, folder))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def _step_of(path: Path) -> int:
    match = re.search(r"global_step_(\d+)", str(path))
    return int(match.group(1)) if match else 0


def _metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mlflow_names(metrics: dict[str, float]) -> dict[str, float]:
    """MLflow metric names allow no ``@``: ``val/avg@1`` → ``val/avg_at_1``."""
    return {k.replace("@", "_at_"): v for k, v in metrics.items()}
