"""``run_sft``: prepared cold-start data + base model → an SFT'd HF model folder, via LLaMA-Factory.

Run folder (``out_dir``)::

    llamafactory_sft.yaml      the LLaMA-Factory training arguments
    dataset_info.json          points at DATA/Mini-o3-Coldstart.json (absolute path)
    deepspeed_<stage>.json     when DeepSpeed is on
    sft_run.json               the config as run, automatic changes, data and model
    train.log                  the training process's output (appended by each attempt)
    loss_curve.png             training loss per optimizer step
    model/                     LLaMA-Factory's output_dir: the final HF model (weights, processor,
                               chat template, sanitised generation_config.json), trainer_state.json,
                               trainer_log.jsonl and the checkpoint-N/ resume points

Re-running into the same folder resumes from ``model/checkpoint-N`` (the highest N).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..data.sources import HUB_ID
from .config import SFTConfig
from .files import YAML_NAME, DatasetSummary, RunFiles, check_dataset, write_run_files
from .hardware import Adjustment, Hardware, adapt_to_hardware, detect_hardware
from .launch import (
    SFTError,
    failure_message,
    run_training,
    training_command,
    training_env,
)
from .outputs import (
    last_checkpoint,
    plot_loss,
    read_trainer_log,
    repair_checkpoint_weights,
    sanitize_generation_config,
    write_legacy_processor_files,
)

MODEL_SUBDIR = "model"
RECORD_NAME = "sft_run.json"
LOG_NAME = "train.log"
LOSS_PNG = "loss_curve.png"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class PreparedRun:
    """Everything needed to start training; ``prepare_sft_run`` writes the files, nothing runs yet."""

    run_dir: Path
    model_dir: Path
    config: SFTConfig
    adjustments: list[Adjustment]
    dataset: DatasetSummary
    files: RunFiles
    command: list[str]
    env: dict[str, str] = field(repr=False)
    resume_from: Path | None
    repaired_tensors: int


@dataclass(frozen=True)
class SFTResult:
    """A finished run."""

    run_dir: Path
    model_dir: Path
    config: SFTConfig
    adjustments: list[Adjustment]
    resumed_from: Path | None
    global_step: int
    final_loss: float | None
    loss_curve: Path | None
    trainer_state: Path
    train_log: Path
    seconds: float
    generation_keys_removed: list[str]


def prepare_sft_run(
    data_dir: Path,
    model: str,
    out_dir: Path,
    config: SFTConfig | None = None,
    overrides: Sequence[str] = (),
    *,
    hardware: Hardware | None = None,
    environ: Mapping[str, str] | None = None,
) -> PreparedRun:
    """Resolve the config (overrides, MLflow, hardware), check data and model, write the run files."""
    config = config or SFTConfig()
    environ = dict(os.environ if environ is None else environ)
    if any(o.split("=", 1)[0].strip() == "model_name_or_path" for o in overrides):
        raise ValueError("set the base model with the model argument (--model), not model_name_or_path=...")
    config = config.model_copy(update={"model_name_or_path": _resolve_model(model)}).with_overrides(list(overrides))

    adjustments: list[Adjustment] = []
    if environ.get("MLFLOW_TRACKING_URI") and "mlflow" not in config.report_to:
        reporters = [r for r in config.report_to if r != "none"] + ["mlflow"]
        adjustments.append(Adjustment("report_to", config.report_to, reporters, "MLFLOW_TRACKING_URI is set"))
        config = config.model_copy(update={"report_to": reporters})
    if "mlflow" in config.report_to and not _importable("mlflow"):
        raise SFTError("report_to includes mlflow (MLFLOW_TRACKING_URI is set?) but the mlflow package is not installed")

    if config.launch.mode != "ray":
        hardware = hardware or detect_hardware()
        config, changed = adapt_to_hardware(config, hardware)
        adjustments += changed
        if config.deepspeed != "none" and not hardware.deepspeed:
            raise SFTError(f"deepspeed={config.deepspeed!r} needs the deepspeed package; install it or --set deepspeed=none")
    elif config.launch.master_addr is None:
        from .ray_master import resolve_master_addr

        try:
            addr = resolve_master_addr(config.launch.ray_init_kwargs, environ)
        except RuntimeError as exc:
            raise SFTError(str(exc)) from None
        if addr:
            reason = "rank 0 on a GPU node (LLaMA-Factory would rendezvous on the Ray head, which may have no GPU)"
            adjustments.append(Adjustment("launch.master_addr", None, addr, reason))
            config = config.model_copy(update={"launch": config.launch.model_copy(update={"master_addr": addr})})

    run_dir = Path(out_dir).expanduser().resolve()
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"SFT run folder {str(run_dir)!r} exists and is not a directory")
    model_dir = run_dir / MODEL_SUBDIR
    dataset = check_dataset(Path(data_dir), config.dataset)
    resume_from = _resume_point(config, model_dir, run_dir, dataset)

    command = training_command(run_dir / YAML_NAME, config)
    env = training_env(config, environ)
    files = write_run_files(run_dir, config, dataset, model_dir)
    repaired = 0
    if resume_from is not None and config.deepspeed == "none":
        repaired = repair_checkpoint_weights(resume_from)
    _write_record(run_dir, config, adjustments, dataset, resume_from)
    return PreparedRun(
        run_dir=run_dir,
        model_dir=model_dir,
        config=config,
        adjustments=adjustments,
        dataset=dataset,
        files=files,
        command=command,
        env=env,
        resume_from=resume_from,
        repaired_tensors=repaired,
    )


def run_sft(
    data_dir: Path,
    model: str,
    out_dir: Path,
    config: SFTConfig | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> SFTResult:
    """SFT ``model`` on the prepared cold-start data in ``data_dir``; the run folder is ``out_dir``.

    ``overrides`` are ``key=value`` strings applied to ``config`` (default: ``SFTConfig()``, the
    seed recipe; see ``SFTConfig``). Raises ``ValueError``/``FileNotFoundError`` for bad inputs
    (naming them) and ``SFTError`` when training fails (exit code, last log lines, log path).
    On the non-zero ranks of a multi-node torchrun (where rank 0 writes the model) the output
    checks and post-processing are skipped.
    """
    prepared = prepare_sft_run(data_dir, model, out_dir, config, overrides)
    log_path = prepared.run_dir / LOG_NAME
    notes = [f"adjusted {a}" for a in prepared.adjustments]
    if prepared.resume_from is not None:
        notes.append(f"resuming from {prepared.resume_from}")
    if prepared.repaired_tensors:
        notes.append(f"renamed {prepared.repaired_tensors} checkpoint tensors to runtime names (transformers #43701)")
    _note(notes, log_path)

    run = run_training(
        prepared.command,
        prepared.env,
        log_path=log_path,
        trainer_log=prepared.model_dir / "trainer_log.jsonl",
        progress=progress,
        cwd=prepared.run_dir,
    )
    if run.returncode != 0:
        context = f"of {prepared.config.model_name_or_path!r} on {prepared.dataset.json_path}"
        raise SFTError(failure_message(run, context), returncode=run.returncode, log_path=log_path, tail=run.tail)
    return _finish(prepared, run.seconds, log_path)


def _finish(prepared: PreparedRun, seconds: float, log_path: Path) -> SFTResult:
    model_dir = prepared.model_dir
    main_node = not prepared.env.get("FORCE_TORCHRUN") or prepared.env.get("NODE_RANK", "0") == "0"
    removed: list[str] = []
    if main_node:
        if not any((model_dir / name).is_file() for name in _WEIGHT_FILES):
            raise SFTError(f"training exited 0 but wrote no model weights to {model_dir}; see {log_path}", log_path=log_path)
        removed = sanitize_generation_config(model_dir)
        for checkpoint in model_dir.glob("checkpoint-*"):
            sanitize_generation_config(checkpoint)
        write_legacy_processor_files(model_dir)
        for weights in model_dir.glob("*.safetensors"):
            weights.chmod(0o644)  # save_pretrained leaves 0600; other pipeline steps may run as other users
    state_path = model_dir / "trainer_state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    records = read_trainer_log(model_dir / "trainer_log.jsonl")
    curve = plot_loss(model_dir / "trainer_log.jsonl", prepared.run_dir / LOSS_PNG) if main_node else None
    result = SFTResult(
        run_dir=prepared.run_dir,
        model_dir=model_dir,
        config=prepared.config,
        adjustments=prepared.adjustments,
        resumed_from=prepared.resume_from,
        global_step=int(state.get("global_step", 0)),
        final_loss=float(records[-1]["loss"]) if records else None,
        loss_curve=curve,
        trainer_state=state_path,
        train_log=log_path,
        seconds=seconds,
        generation_keys_removed=removed,
    )
    summary = {k: str(v) if isinstance(v, Path) else v for k, v in result.__dict__.items() if k not in ("config", "adjustments")}
    _note([f"done: {json.dumps(summary, default=str)}"], log_path)
    return result


# -- helpers ---------------------------------------------------------------------------------


def _resolve_model(model: str) -> str:
    """An existing local folder (made absolute) or a hub id ``org/name``; anything else is an error."""
    if not model or not model.strip():
        raise ValueError("model must be a local model folder or a Hugging Face id, got an empty string")
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {model!r} has no config.json")
        return str(path.resolve())
    if path.is_absolute() or model.startswith((".", "~")) or not HUB_ID.match(model):
        raise FileNotFoundError(f"model {model!r} is neither an existing folder nor a Hugging Face id (org/name)")
    return model


def _resume_point(config: SFTConfig, model_dir: Path, run_dir: Path, dataset: DatasetSummary) -> Path | None:
    """The checkpoint LLaMA-Factory will resume from, after checking the run folder allows it."""
    if config.resume_from_checkpoint:
        checkpoint = Path(config.resume_from_checkpoint).expanduser().resolve()
        if not checkpoint.is_dir():
            raise FileNotFoundError(f"resume_from_checkpoint {config.resume_from_checkpoint!r} is not a folder")
        return checkpoint
    if config.overwrite_output_dir:
        return None
    checkpoint = last_checkpoint(model_dir)
    if checkpoint is None:
        if any((model_dir / name).is_file() for name in _WEIGHT_FILES):
            raise ValueError(
                f"run folder {str(run_dir)!r} already holds a finished model without checkpoints to resume from; "
                "use another output folder or --set overwrite_output_dir=true"
            )
        return None
    record_path = run_dir / RECORD_NAME
    if record_path.is_file():
        before = json.loads(record_path.read_text(encoding="utf-8"))
        now = {"model": config.model_name_or_path, "data": str(dataset.json_path)}
        for key, value in now.items():
            if before.get(key) not in (None, value):
                raise ValueError(
                    f"run folder {str(run_dir)!r} holds checkpoints trained with {key} {before[key]!r}, not {value!r}; "
                    "use another output folder or --set overwrite_output_dir=true"
                )
    return checkpoint


def _write_record(
    run_dir: Path, config: SFTConfig, adjustments: list[Adjustment], dataset: DatasetSummary, resume: Path | None
) -> None:
    record: dict[str, Any] = {
        "model": config.model_name_or_path,
        "data": str(dataset.json_path),
        "samples": dataset.samples,
        "images": dataset.images,
        "resume_from": str(resume) if resume else None,
        "adjustments": [a.__dict__ for a in adjustments],
        "config": config.model_dump(mode="json"),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_text_atomic(run_dir / RECORD_NAME, json.dumps(record, indent=2) + "\n")


def _note(lines: list[str], log_path: Path) -> None:
    """Tell the user (stderr) and the log."""
    if not lines:
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        for line in lines:
            print(f"[mini-o3 sft] {line}", file=sys.stderr, flush=True)
            log.write(f"[mini-o3 sft] {line}\n")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
