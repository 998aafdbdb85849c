"""The embedded run (``mini-o3 run``, ``make demo``): the real ``mini-o3-train`` pipeline under
``kfp.local`` with ``SubprocessRunner(use_venv=False)`` — every task is a subprocess of this
Python — on embedded defaults: a tiny random Qwen2.5-VL, the synthetic benchmark, local storage
(``<out>/artifacts``), a local MLflow file store (``<out>/mlruns``) and the CPU.

kfp.local ignores kfp-kubernetes settings (secrets, GPUs, node selectors, the platform ConfigMap),
so the same compiled DAG runs here and on a cluster; secrets, if any, and the platform settings
(``embedded_platform``: the MLflow store) come from this process's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table

#: The smoke profile (wiring only; tests): a few fast CPU steps of the token-parity tiny model.
TINY_SFT = [
    "max_steps=2", "max_samples=4", "cutoff_len=2048", "learning_rate=1e-3", "lr_scheduler_type=constant",
    "warmup_ratio=0", "gradient_accumulation_steps=1", "logging_steps=1", "save_steps=100",
    "preprocessing_num_workers=1", "dataloader_num_workers=0", "extra_args.disable_gradient_checkpointing=true",
]
#: One GRPO step of the reference engine with tiny batches and short turns.
TINY_RL = [
    "total_training_steps=1", "train_batch_size=2", "rollout_n=2", "ppo_mini_batch_size=2", "max_tokens_per_turn=8",
    "max_turns=2", "val_n=1", "val_max_turns=2", "val_do_sample=false", "val_before_train=false", "save_freq=1",
    "test_freq=1", "judge.enabled=false", "rejection_sample=false", "min_pixels=3136", "max_pixels=60000",
]
#: Avg@k with short turns and small images.
TINY_EVAL = ["max_turns=2", "max_tokens_per_turn=8", "min_pixels=3136", "max_pixels=60000", "concurrency=8"]

#: The learning profile (``make demo``): the grid family (zooming is necessary, the crop targets are
#: quadrants), 112 x 112 model-facing images, and the "learn" tiny model (reduced vocabulary).
LEARN_PIXELS = (3136, 12544)
LEARN_SYNTHETIC = [
    "config.family=grid", "config.width_range=[448,448]", "config.height_range=[448,448]",
    "config.coldstart_strategies=[zoom]", "config.coldstart_rollouts=1",
    f"config.coldstart_pixels=[{LEARN_PIXELS[0]},{LEARN_PIXELS[1]}]",
]
LEARN_SFT = [
    "num_train_epochs=5", "per_device_train_batch_size=8", "gradient_accumulation_steps=1", "learning_rate=1.5e-3",
    "lr_scheduler_type=constant", "warmup_ratio=0", "cutoff_len=1024", f"image_min_pixels={LEARN_PIXELS[0]}",
    f"image_max_pixels={LEARN_PIXELS[1]}", "freeze_vision_tower=false", "freeze_multi_modal_projector=false",
    "logging_steps=10", "save_steps=1000", "preprocessing_num_workers=1", "dataloader_num_workers=0",
    "extra_args.disable_gradient_checkpointing=true",
]
LEARN_RL = [
    "total_training_steps=10", "train_batch_size=16", "rollout_n=4", "ppo_mini_batch_size=16", "lr=1e-4",
    "lr_warmup_steps_ratio=0.3", "use_kl_loss=true", "kl_loss_coef=0.1",
    "max_tokens_per_turn=64", "max_turns=4", "val_max_turns=4", "val_n=1", "val_do_sample=false",
    "val_before_train=true", "test_freq=5", "save_freq=10", "judge.enabled=false",
    f"min_pixels={LEARN_PIXELS[0]}", f"max_pixels={LEARN_PIXELS[1]}",
]
LEARN_EVAL = ["max_turns=4", "max_tokens_per_turn=64", f"min_pixels={LEARN_PIXELS[0]}",
              f"max_pixels={LEARN_PIXELS[1]}", "concurrency=128"]

#: Seconds the task processes of an interrupted run get to unwind before they are killed.
STOP_GRACE_S = 30.0

Profile = Literal["learn", "smoke"]
#: Per profile: tiny-model profile, synthetic overrides, SFT / RL / eval overrides, sizes, k.
PROFILES: dict[str, dict[str, Any]] = {
    "learn": dict(model="learn", synthetic=LEARN_SYNTHETIC, sft=LEARN_SFT, rl=LEARN_RL, eval=LEARN_EVAL,
                  n_train=1280, n_test=128, eval_k=4, compare=True),
    "smoke": dict(model="parity", synthetic=[], sft=TINY_SFT, rl=TINY_RL, eval=TINY_EVAL,
                  n_train=8, n_test=4, eval_k=2, compare=False),
}


class EmbeddedConfig(BaseModel):
    """Embedded-run settings (``mini-o3 run --param KEY=VALUE`` sets pipeline parameters on top).

    ``profile`` "learn" (the default, ``make demo``) trains a model that learns to zoom and reports
    base → SFT → RL with paired CIs; "smoke" proves the wiring in about a minute (tests). Unset
    fields take the profile's values."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(Path("runs/embedded"), description="run folder: artifacts/, mlruns/, kfp/, tiny-model/")
    profile: Profile = Field("learn", description="learn (make demo) or smoke (wiring only)")
    n_train: int | None = Field(None, ge=2, description="synthetic train questions (cold-start rows and RL prompts)")
    n_test: int | None = Field(None, ge=1, description="synthetic test questions (RL validation and evaluation)")
    seed: int = Field(0, ge=0, description="seed of the tiny model and the synthetic data; other than 0 it also "
                                           "offsets the SFT, RL and evaluation seeds (42 + seed, 1 + seed, seed)")
    canvas: tuple[int, int] | None = Field(None, description="synthetic canvas side range in px (smoke: 512-768)")
    eval_k: int | None = Field(None, ge=1, description="samples per question in the evaluation")
    sft: list[str] | None = Field(None, description="SFTConfig overrides")
    rl: list[str] | None = Field(None, description="RLConfig overrides")
    eval: list[str] | None = Field(None, description="EvalConfig overrides")
    verbose: bool = Field(False, description="also print kfp.local's executor input dumps (hidden by default)")

    def setting(self, name: str) -> Any:
        """The field's value, or the profile's when unset."""
        value = getattr(self, name, None)
        return PROFILES[self.profile][name] if value is None else value


@dataclass
class EmbeddedResult:
    """Where an embedded run left its outputs."""

    out: Path
    run_root: Path
    report_md: Path
    report_html: Path
    mlflow_uri: str
    seconds: float
    stages: dict[str, Any] = field(default_factory=dict)


def embedded_params(config: EmbeddedConfig, model_dir: Path) -> dict[str, Any]:
    """Pipeline parameters of the embedded run."""
    out = config.out.resolve()
    synthetic = [f"n_train={config.setting('n_train')}", f"n_test={config.setting('n_test')}", f"seed={config.seed}",
                 *PROFILES[config.profile]["synthetic"]]
    def seeded(override: str) -> list[str]:  # seed 0 keeps the configs' own (the seed project's) seeds
        return [override] if config.seed else []

    canvas = config.canvas or ((512, 768) if config.profile == "smoke" else None)
    if canvas:
        synthetic += [f"config.width_range=[{canvas[0]},{canvas[1]}]", f"config.height_range=[{canvas[0]},{canvas[1]}]"]
    return {
        "p0_storage_root": str(out / "artifacts"),
        "p0_experiment": "mini-o3-embedded",
        "p0_judge_enabled": False,  # rule scoring, explicitly: the demo never calls a judge endpoint
        "p1_data_coldstart_source": "synthetic",
        "p1_data_rl_benchmarks": "synthetic",
        "p1_data_eval_benchmarks": "synthetic",
        "p1_data_synthetic": synthetic,
        "p1_data_coldstart_overrides": ["workers=1"],
        "p2_sft_base_model": str(model_dir),
        "p2_sft_overrides": list(config.setting("sft")) + seeded(f"seed={42 + config.seed}"),
        "p2_sft_launch_mode": "inprocess",
        "p3_rl_engine": "local",
        "p3_rl_overrides": list(config.setting("rl")) + seeded(f"seed={1 + config.seed}"),
        "p3_rl_launch_mode": "inprocess",
        "p4_eval_k": config.setting("eval_k"),
        "p4_eval_backend": "local",
        "p4_eval_overrides": list(config.setting("eval")) + seeded(f"seed={config.seed}"),
        "p4_eval_compare": PROFILES[config.profile]["compare"],
    }


def embedded_platform(out: Path) -> dict[str, str]:
    """The platform settings (``bodies.PLATFORM_ENV``, the chart's ConfigMap on a cluster) of an
    embedded run: the MLflow file store under ``out``; local storage needs no S3 endpoint."""
    from mini_o3.tracking import default_tracking_uri

    return {"MLFLOW_TRACKING_URI": default_tracking_uri(out.resolve())}


def task_env(out: Path) -> dict[str, str]:
    """Environment the subprocess tasks inherit: offline hub, caches inside the run folder."""
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(out / "cache" / "datasets"),
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "Agg",
        "MINI_O3_CACHE": str(out / "cache" / "mini-o3"),
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "DISABLE_VERSION_CHECK": "1",  # LLaMA-Factory: no version nag
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(idle_cores()),
    }


def idle_cores() -> int:
    """OpenMP threads for the run's tasks (they run one at a time): the cores not busy at its start.

    On 2 idle cores two threads make an SFT step 1.5x faster than one; beside other load libgomp's
    spinning barriers made it 4-5x slower (benchmarks/RESULTS.md, "Learning profile"), so busy
    cores (``busy_cores``: now, not the lagging load average, which still counts a just-finished
    ``make setup`` for a minute) are left out, and ``OMP_NUM_THREADS`` set by the caller wins."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, round(cores - busy_cores())))


def busy_cores(window_s: float = 0.5, stat: Path = Path("/proc/stat")) -> float:
    """Cores busy right now: the non-idle share of the machine's CPU time over ``window_s``
    (``/proc/stat``) times its CPU count; the 1-minute load average where ``stat`` is unreadable."""
    def times() -> tuple[int, int]:
        fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # all but guest time (counted in user); idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(window_s)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    total = total1 - total0
    return 0.0 if total <= 0 else (1.0 - (idle1 - idle0) / total) * (os.cpu_count() or 1)


def run_embedded(config: EmbeddedConfig = EmbeddedConfig(), params: dict[str, Any] | None = None,
                 console: Console | None = None) -> EmbeddedResult:
    """Build the tiny model, run ``mini-o3-train`` under kfp.local, print and return where the report is."""
    from mini_o3 import storage
    from mini_o3.overrides import compose_params
    from mini_o3.stages import read_result

    from .local_summary import learning_table, read_learning
    from .pipelines import build_train

    console = console or Console(stderr=True)
    out = config.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    console.rule("[bold]embedded run: tiny model")
    model_dir = out / f"tiny-model-{config.profile}"
    if not storage.is_complete(str(model_dir)):
        # in a child process: torch / transformers stay out of this (orchestrating) process, whose
        # memory adds to every task's during the run
        subprocess.run([sys.executable, "-m", "mini_o3.cli", "tiny-model", "--out", str(model_dir),
                        "--seed", str(config.seed), "--profile", PROFILES[config.profile]["model"]],
                       check=True, env={**os.environ, **task_env(out)})
        storage.mark_complete(model_dir)  # a sealed artifact like any stage output
    values = compose_params(embedded_params(config, model_dir), params or {})  # overrides add to the defaults
    artifacts = Path(values["p0_storage_root"])
    artifacts.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in artifacts.iterdir()}
    console.rule("[bold]embedded run: mini-o3-train under kfp.local (SubprocessRunner, no venv)")
    try:
        run_local(build_train(), values, out, console, verbose=config.verbose, platform=embedded_platform(out))
    except (KeyboardInterrupt, SystemExit):
        stop_interrupted(values, before, console)
        raise
    new = [p for p in artifacts.iterdir() if p.name not in before and p.is_dir()]
    if len(new) != 1:
        raise RuntimeError(f"expected one new run folder under {artifacts}, found {[p.name for p in new]}")
    run_root = new[0]
    stages = {}
    for stage, rel in (("prepare_coldstart", "data/coldstart"), ("prepare_rl_data", "data/rl_data"),
                       ("prepare_eval_data", "data/eval_data"), ("sft", "sft"), ("rl", "rl"), ("evaluate", "eval"),
                       ("register", "registered"), ("report", "report")):
        if (run_root / rel).exists():
            stages[stage] = read_result(stage, str(run_root / rel))
    result = EmbeddedResult(out, run_root, run_root / "report" / "report.md", run_root / "report" / "report.html",
                            embedded_platform(out)["MLFLOW_TRACKING_URI"], time.perf_counter() - start, stages)
    console.print(_summary(result))
    learning = read_learning(result.report_md.parent)
    if learning:
        console.print(learning_table(learning))
    console.print(f"[green]report[/green] {result.report_md}\n[green]report (HTML)[/green] {result.report_html}\n"
                  f"[green]MLflow[/green] {result.mlflow_uri}  (view: mlflow ui --backend-store-uri {result.mlflow_uri})\n"
                  + _registered_lines(result) +
                  f"[green]artifacts[/green] {run_root}  ({result.seconds:.0f} s)")
    return result


def stop_interrupted(values: dict[str, Any], before: set[str], console: Console, grace_s: float = STOP_GRACE_S) -> None:
    """A signal stopped the run (the CLI has forwarded it to every task process): give the tasks
    ``grace_s`` to unwind (their MLflow stage runs end KILLED), SIGKILL what is left, then mark the
    pipeline's parent run, and any stage run still open, KILLED (the exit handler never runs)."""
    from mini_o3.interrupts import reap_descendants
    from mini_o3.tracking import kill_open_runs, resolve_tracking_uri

    killed = reap_descendants(grace_s)
    uri = resolve_tracking_uri(None, None)  # the platform env run_local set, as init-run resolves it
    parents = kill_open_runs(experiment=values["p0_experiment"], tracking_uri=uri,
                             run_roots_under=values["p0_storage_root"], skip_run_roots=before)
    console.print(f"[yellow]stopped[/yellow]: MLflow run {', '.join(parents) or '(none open)'} marked KILLED"
                  + (f"; {len(killed)} task process(es) did not stop in {grace_s:g} s and were killed" if killed else ""))


def run_local(pipeline: Any, values: dict[str, Any], out: Path, console: Console, verbose: bool = False,
              platform: dict[str, str] | None = None) -> None:
    """Run a pipeline under kfp.local with ``SubprocessRunner(use_venv=False)``: tasks are
    subprocesses of this Python and inherit its environment (``task_env(out)`` and the ``platform``
    settings, which a cluster's tasks get from the chart's ConfigMap, are added to it);
    kfp.local's notes that Kubernetes settings do nothing locally are silenced (expected here), and
    so, unless ``verbose``, are the executors' input dumps (``local_log``)."""
    from kfp import local

    from .local_log import quiet_executor_logs

    os.environ.update({**task_env(out), **(platform or {})})
    console.print("kfp.local runs every task as a subprocess of this Python and ignores the Kubernetes settings "
                  "(GPUs, secrets, node selectors, timeouts): expected here")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out / "kfp"), raise_on_error=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        with quiet_executor_logs(enabled=not verbose):
            pipeline(**values)


def _registered_lines(result: EmbeddedResult) -> str:
    """The registered model version(s) of the run and the MLflow UI command that shows them."""
    registered = result.stages.get("register")
    versions = registered.info.get("versions", {}) if registered is not None else {}
    lines = [f"[green]registered[/green] {v['name']} version {v['version']} (@{v['alias']}, {v['ref']}; "
             f"evaluate it: --param model_uri=models:/{v['name']}@{v['alias']})\n" for v in versions.values()]
    if lines:
        lines.append(f"  see it: mlflow ui --backend-store-uri {result.mlflow_uri} --registry-store-uri "
                     f"{result.mlflow_uri}  → Models → {next(iter(versions.values()))['name']}\n")
    return "".join(lines)


def _summary(result: EmbeddedResult) -> Table:
    table = Table(title="mini-o3-train (embedded)")
    for column in ("stage", "output", "metrics"):
        table.add_column(column)
    for stage, res in result.stages.items():
        shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(res.metrics.items())[:4])
        table.add_row(stage, str(Path(res.out_uri).relative_to(result.run_root)), shown)
    return table
