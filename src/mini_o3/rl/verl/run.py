"""``run_rl_verl``: convert the data, write the plug-in yaml files, build and run the verl command.

Layout under ``out_dir``::

    verl/data/train.parquet, verl/data/val.parquet   converted rows (images embedded)
    verl/agent_loops.yaml, verl/crop_tool.yaml      generated plug-in configs
    verl/command.json                                the command (argv) that was / would be run
    verl/rl_config.json                              the effective RLConfig
    checkpoints/                                     verl's trainer.default_local_dir

verl runs as a plain Ray program: started inside a Ray job / KubeRay RayJob it attaches to that
cluster (``ray.init`` with ``RAY_ADDRESS``), else it starts a local Ray. Paths in the command are
absolute, so on a multi-node cluster ``out_dir`` and the model must be on storage every node mounts
(verl needs that for the model and checkpoints anyway).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import RLConfig
from . import command as cmd

#: Extra verl overrides of the documented 1-GPU LoRA smoke run (tiny random-init model).
SMOKE_VERL_OVERRIDES: tuple[str, ...] = (
    "actor_rollout_ref.model.lora_rank=8",
    "actor_rollout_ref.model.lora_alpha=16",
    "actor_rollout_ref.model.target_modules=all-linear",
    "actor_rollout_ref.rollout.gpu_memory_utilization=0.4",
    "actor_rollout_ref.rollout.enforce_eager=true",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
)
#: RLConfig overrides of the smoke run (one step, 2 prompts x 2 samples, no judge, short turns).
SMOKE_RL_OVERRIDES: tuple[str, ...] = (
    "train_batch_size=2", "ppo_mini_batch_size=2", "rollout_n=2", "total_training_steps=1",
    "val_n=1", "val_do_sample=false", "val_before_train=false", "test_freq=-1", "save_freq=1",
    "max_tokens_per_turn=64", "max_context=8192", "max_prompt_length=4096", "judge.enabled=false",
)


class VerlError(RuntimeError):
    """verl could not be started or exited with an error."""


@dataclass(frozen=True)
class VerlRun:
    """The built command, the generated files, the run folder and verl's exit code (None: dry run)."""

    command: list[str]
    files: dict[str, Path]
    out_dir: Path
    returncode: int | None


def run_rl_verl(
    model: str,
    train: list[Path],
    val: list[Path],
    out_dir: Path,
    config: RLConfig | None = None,
    overrides: Sequence[str] = (),
    *,
    nnodes: int = 1,
    n_gpus_per_node: int = 8,
    dry_run: bool = False,
    progress: bool = True,
    verl_overrides: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> VerlRun:
    """Train ``model`` with GRPO on verl (same inputs as ``run_rl_local``).

    ``overrides``: RLConfig ``key=value``; ``verl_overrides``: raw hydra overrides appended last
    (e.g. LoRA, ``SMOKE_VERL_OVERRIDES``). ``dry_run`` writes the files and returns the command.
    Raises ``ValueError`` / ``FileNotFoundError`` for bad input, ``VerlError`` when verl fails.
    """
    config = (config or RLConfig()).with_overrides(list(overrides))
    cmd.check(config, nnodes=nnodes, n_gpus_per_node=n_gpus_per_node)
    out_dir = Path(out_dir).resolve()
    work = out_dir / "verl"
    if not train:
        raise ValueError("no train data given")
    files = cmd.write_files(config, work)
    files["train.parquet"] = _convert(train, work / "data" / "train.parquet", "train", config, progress)
    if val:
        files["val.parquet"] = _convert(val, work / "data" / "val.parquet", "val", config, progress)
    model_ref = str(Path(model).resolve()) if Path(model).exists() else model
    config = config.with_inputs(model_ref, [str(Path(p).resolve()) for p in train],
                                [str(Path(p).resolve()) for p in val])  # provenance: rl_config.json
    argv = [sys.executable if not dry_run else "python", *cmd.ENTRYPOINT[1:]]
    argv += cmd.overrides(config, model=model_ref, train_files=[files["train.parquet"]],
                          val_files=[files["val.parquet"]] if val else [], files=files, out_dir=out_dir,
                          nnodes=nnodes, n_gpus_per_node=n_gpus_per_node)
    argv += list(verl_overrides)
    (work / "rl_config.json").write_text(config.model_dump_json(indent=2))
    (work / "command.json").write_text(json.dumps(argv, indent=1))
    files["rl_config.json"], files["command.json"] = work / "rl_config.json", work / "command.json"
    if dry_run:
        return VerlRun(argv, files, out_dir, None)
    _preflight()
    echo(f"starting verl: {' '.join(argv[:3])} ... ({len(argv) - 3} overrides; full command in {files['command.json']})")
    returncode = subprocess.call(argv, cwd=out_dir)
    if returncode != 0:
        raise VerlError(f"verl exited with code {returncode}; its log is above, the command in {files['command.json']}")
    return VerlRun(argv, files, out_dir, returncode)


def _convert(sources: Sequence[Path], out: Path, split: str, config: RLConfig, progress: bool) -> Path:
    from .data import convert

    if not progress:
        convert(sources, out, split, prompt_set=config.prompt_set)
        return out
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), transient=True) as bar:
        task = bar.add_task(f"converting {split} data for verl")
        count = convert(sources, out, split, prompt_set=config.prompt_set,
                        on_row=lambda n: bar.update(task, description=f"converting {split} data for verl: {n} rows"))
    print(f"{split}: {count} rows -> {out}", file=sys.stderr)
    return out


def _preflight() -> None:
    """Fail with a clear message when verl cannot train here (no GPU, no vLLM)."""
    import importlib.util

    missing = [name for name in ("vllm", "transfer_queue") if importlib.util.find_spec(name) is None]
    if missing:
        raise VerlError(
            f"the verl engine needs {', '.join(missing)} (the mini-o3-rl image installs verl[vllm]); "
            "use --dry-run to only build the command, or --engine local on this machine"
        )
    _check_gpus()


def _check_gpus(environ: Mapping[str, str] = os.environ) -> None:
    """A local run needs a GPU here; a Ray job driver (``RAY_ADDRESS`` set, e.g. a RayJob's CPU head)
    trains on the cluster's GPU workers, which verl's resource pools check when they start."""
    if environ.get("RAY_ADDRESS"):
        return
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    if not has_gpu and not shutil.which("nvidia-smi"):
        raise VerlError("the verl engine trains on GPUs and none is visible here (and no RAY_ADDRESS names a Ray "
                        "cluster to join); use --engine local or run it on the Ray/KubeRay GPU cluster")
