"""``mini-o3``: the command line. Thin commands over the library; heavy imports stay lazy."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="Mini-o3 pipelines: multi-turn visual search with a crop tool, on Kubeflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.callback()
def _main() -> None:
    """Mini-o3 pipelines: multi-turn visual search with a crop tool, on Kubeflow."""
    from mini_o3.interrupts import stop_tree_on_signals

    stop_tree_on_signals()  # SIGTERM / SIGINT stop every child process and unwind (MLflow KILLED)


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    from mini_o3.redact import redact_text

    console.print(f"[red]error:[/red] {escape(redact_text(str(message)))}")
    raise typer.Exit(code=code)


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Dataset directory to write (BASE_IMAGE_DIR is its parent)."),
    n_train: int = typer.Option(200, "--n-train", min=0, help="Train questions (also the cold-start source)."),
    n_test: int = typer.Option(100, "--n-test", min=0, help="Test (val.json) questions."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed; the same seed writes byte-identical files."),
    width_range: Optional[tuple[int, int]] = typer.Option(None, "--width-range", help="Canvas width LOW HIGH in px."),
    height_range: Optional[tuple[int, int]] = typer.Option(None, "--height-range", help="Canvas height LOW HIGH in px."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out directory."),
) -> None:
    """Generate the synthetic visual-search benchmark and its oracle cold-start parquet."""
    from pydantic import ValidationError

    from mini_o3.data.synthetic import SynthConfig, generate

    if n_train + n_test == 0:
        _fail("--n-train and --n-test are both 0: nothing to generate")
    overrides = {k: v for k, v in {"width_range": width_range, "height_range": height_range}.items() if v}
    try:
        config = SynthConfig(**overrides)
        manifest = generate(config, out, n_train=n_train, n_test=n_test, seed=seed, overwrite=overwrite, progress=True)
    except ValidationError as exc:
        _fail(f"invalid synthetic config: {exc}")
    except (ValueError, FileExistsError, NotADirectoryError) as exc:
        _fail(str(exc))
    counts = ", ".join(f"{split} {summary.count}" for split, summary in manifest.splits.items())
    console.print(f"[green]wrote[/green] {out}: {counts}, cold-start rows {manifest.coldstart.rows}")


prepare_app = typer.Typer(help="Data stage: cold-start SFT data and benchmark / RL sets.", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")
SET_HELP = "Config override FIELD=VALUE (repeatable; the value is read as YAML)."


@prepare_app.command("coldstart")
def prepare_coldstart_cmd(
    source: str = typer.Option(..., "--source", help="HF dataset id, a folder of parquet files, or one parquet file."),
    out: Path = typer.Option(..., "--out", help="Output folder (LLaMA-Factory dataset_dir)."),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP + " Fields: ColdstartPrepConfig."),
) -> None:
    """Cold-start parquet → LLaMA-Factory sharegpt JSON + original image bytes + dataset_info.json."""
    from mini_o3.data.coldstart import ColdstartPrepConfig, ColdstartPrepError, prepare_coldstart
    from mini_o3.overrides import apply_overrides

    try:
        config = apply_overrides(ColdstartPrepConfig(), overrides)
        summary = prepare_coldstart(source, out, config, progress=True)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, ColdstartPrepError) as exc:
        _fail(str(exc))
    console.print(f"[green]wrote[/green] {out}: {summary.rows_out} of {summary.rows_in} rows, {summary.rows_rejected} rejected")


@prepare_app.command("bench")
def prepare_bench_cmd(
    name: str = typer.Option(..., "--name", help="Benchmark: see `mini-o3 prepare list`."),
    source: str = typer.Option(..., "--source", help="HF dataset id or a local folder / file of that benchmark."),
    out: Path = typer.Option(..., "--out", help="Output folder; BASE_IMAGE_DIR is its parent."),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP + " Fields: BenchPrepConfig."),
) -> None:
    """A benchmark or RL set → unified parquet + Mini-o3 train.json / val.json + images."""
    from mini_o3.data.bench import BenchPrepConfig, prepare_bench
    from mini_o3.overrides import apply_overrides

    try:
        config = apply_overrides(BenchPrepConfig(), overrides)
        summary = prepare_bench(name, source, out, config, progress=True)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        _fail(str(exc))
    console.print(f"[green]wrote[/green] {out}: {summary.rows_out} rows, {summary.rejected} rejected")


@prepare_app.command("list")
def prepare_list() -> None:
    """The benchmark names `prepare bench` knows, with their hub ids and splits."""
    from rich.table import Table

    from mini_o3.data.bench import BENCHMARKS

    table = Table("name", "split", "data_source", "hub id", "description")
    for spec in BENCHMARKS.values():
        table.add_row(spec.name, spec.split, ", ".join(spec.data_sources), spec.hub_id or "-", spec.description)
    Console().print(table)


@app.command("tiny-model")
def tiny_model(
    out: Path = typer.Option(..., "--out", help="Directory for the HF model (config, weights, tokenizer, processor)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Weight-init seed; the same seed writes identical weights."),
    profile: str = typer.Option("parity", "--profile", metavar="parity|learn",
                                help="parity: the real Qwen vocabulary (token-parity tests); learn: the learning "
                                     "profile's model (reduced vocabulary, wider and deeper; learns on a CPU)."),
) -> None:
    """Build a random-init tiny Qwen2.5-VL with an offline Qwen tokenizer (a few MB)."""
    from mini_o3.tiny import TINY_PROFILES, build_tiny_model

    if profile not in TINY_PROFILES:
        _fail(f"--profile {profile!r} is not a tiny-model profile; expected one of {', '.join(TINY_PROFILES)}")
    try:
        path = build_tiny_model(out, seed=seed, progress=True, spec=TINY_PROFILES[profile])
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"[green]wrote[/green] {path}")


@app.command()
def sft(
    data: Path = typer.Option(..., "--data", help="Prepared cold-start folder (`mini-o3 prepare coldstart --out`)."),
    model: str = typer.Option(..., "--model", help="Base model: HF id or local folder."),
    out: Path = typer.Option(..., "--out", help="Run folder; re-running into it resumes from its last checkpoint."),
    overrides: list[str] = typer.Option(
        [], "--set", help="SFTConfig override KEY=VALUE (repeatable; dotted keys: launch.mode=ray, extra_args.X=1)."
    ),
) -> None:
    """Cold-start SFT with LLaMA-Factory from one typed config (seed recipe defaults)."""
    from mini_o3.sft import SFTError, run_sft

    try:
        result = run_sft(data, model, out, overrides=overrides, progress=True)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except SFTError as exc:
        _fail(str(exc))
    console.print(f"[green]trained[/green] {result.model_dir} (step {result.global_step}, loss {result.final_loss})")


@app.command()
def rl(
    engine: str = typer.Option("local", "--engine", help="RL engine: local (reference, CPU / 1 GPU) or verl (Ray + vLLM, GPUs)."),
    model: str = typer.Option(..., "--model", help="Policy to start from (the SFT model folder)."),
    train: list[Path] = typer.Option(..., "--train", help="Unified parquet file or folder with train.parquet (repeatable)."),
    val: list[Path] = typer.Option([], "--val", help="Unified parquet file or folder with val.parquet (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Run folder; re-running into it resumes from the last checkpoint."),
    overrides: list[str] = typer.Option([], "--set", help="RLConfig override KEY=VALUE (repeatable; dotted keys)."),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="verl: GPU nodes (trainer.nnodes)."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", min=1, help="verl: GPUs per node (trainer.n_gpus_per_node)."),
    verl_sets: list[str] = typer.Option([], "--verl-set", help="verl: raw hydra override appended last (repeatable), e.g. LoRA."),
    dry_run: bool = typer.Option(False, "--dry-run", help="verl: write the files and print the command instead of running it."),
) -> None:
    """GRPO with Mini-o3 semantics (multi-turn crop-tool rollouts through run_episode)."""
    if engine == "local":
        if dry_run or verl_sets:
            _fail("--dry-run and --verl-set apply to --engine verl only")
        from mini_o3.rl.local import run_rl_local

        try:
            result = run_rl_local(model, list(train), list(val), out, overrides=overrides, progress=True)
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        console.print(f"[green]done[/green] {out}: step {result.global_step}")
        return
    if engine != "verl":
        _fail(f"unknown RL engine {engine!r}; available: local, verl")
    import shlex

    from mini_o3.rl.verl import VerlError, run_rl_verl

    try:
        run = run_rl_verl(model, list(train), list(val), out, overrides=overrides, nnodes=nnodes,
                          n_gpus_per_node=gpus_per_node, dry_run=dry_run, verl_overrides=verl_sets,
                          progress=True, echo=console.print)
    except (ValueError, FileNotFoundError, VerlError) as exc:
        _fail(str(exc))
    if dry_run:
        for name, path in run.files.items():
            if path.suffix in (".yaml", ".json") and name != "command.json":
                console.print(f"[bold]# {path}[/bold]")
                print(path.read_text().rstrip())
            elif name != "command.json":
                console.print(f"[bold]# {path}[/bold] (verl parquet)")
        console.print("[bold]# command[/bold]")
        print(" \\\n    ".join(shlex.quote(arg) for arg in run.command))
        return
    console.print(f"[green]done[/green] {out} (verl exit code {run.returncode})")


EVAL_SET_HELP = ("EvalConfig override KEY=VALUE (repeatable; dotted keys): max_turns=32, temperature=0, "
                 "protocol=rule, judge.model=..., judge.base_url=..., judge.api=openai|azure, judge.cache_path=..., "
                 "judge_failure=exclude, ...")


@app.command("eval")
def evaluate(
    policy: str = typer.Option(..., "--policy", help="openai:URL[#served-model], vllm:MODEL (served for the run) or local:MODEL_DIR."),
    bench: list[Path] = typer.Option(..., "--bench", help="Prepared benchmark folder (repeatable)."),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="Samples per question (default: 32 VP/V*, 8 HR, 1 MME)."),
    out: Path = typer.Option(..., "--out", help="Output folder; re-running into it resumes finished samples."),
    protocol: Optional[str] = typer.Option(
        None, "--protocol", help="Scoring: paper (default; the LLM judge scores every sample, as the paper) or rule "
                                 "(rule scorers only; numbers not comparable to the paper's)."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Judge model (default gpt-4o-2024-11-20, the paper's)."),
    judge_base_url: Optional[str] = typer.Option(
        None, "--judge-base-url", help="Judge endpoint (OpenAI-compatible, or the Azure endpoint with --judge-api azure); "
                                       "default: END_POINT (azure) or OPENAI_BASE_URL from the environment."),
    judge_api: Optional[str] = typer.Option(None, "--judge-api", help="auto (azure when END_POINT is set), openai or azure."),
    judge_cache: Optional[Path] = typer.Option(None, "--judge-cache", help="sqlite file caching judge verdicts across runs."),
    judge_failure: Optional[str] = typer.Option(
        None, "--judge-failure", help="A judge call failing after its retries: score_zero (default, as upstream) or exclude."),
    overrides: list[str] = typer.Option([], "--set", help=EVAL_SET_HELP),
    gpus: int = typer.Option(1, "--gpus", min=1, help="vllm: GPUs for the server (split into tensor-parallel x replicas)."),
) -> None:
    """Avg@k over benchmarks with multi-turn crop-tool rollouts; report, plots and trajectory viewer.

    Scored under the paper's protocol by default (judge credentials: OPENAI_API_KEY, or END_POINT,
    API_VERSION and API_KEY for Azure as the paper; --judge-base-url for a keyless server).
    """
    from mini_o3.evaluate.runner import EvalError, resolve_config, run_eval

    flags = {"protocol": protocol, "judge.model": judge_model, "judge.base_url": judge_base_url, "judge.api": judge_api,
             "judge.cache_path": judge_cache, "judge_failure": judge_failure, "k": k}
    sets = list(overrides) + [f"{key}={value}" for key, value in flags.items() if value is not None]
    try:
        config = resolve_config(None, sets)
        console.print(f"scoring protocol [bold]{config.protocol}[/bold]"
                      + (f" (judge {config.judge.model})" if config.protocol == "paper"
                         else ": rule scorers only, numbers not comparable to the paper's"))
        result = run_eval(policy, list(bench), out, config, progress=True, gpus=gpus)
    except (EvalError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except (KeyboardInterrupt, SystemExit) as exc:
        _stopped(exc, out)
    _eval_warnings(result)
    console.print(f"[green]wrote[/green] {result.files.get('report.md', out)}")
    problem = result.failure()
    if problem:
        _fail(problem, code=1)


def _stopped(exc: BaseException, out: Path) -> None:
    """A signal stopped the evaluation: say that the stored samples resume, and exit at once
    (in-flight requests are not waited for; every stored sample is complete)."""
    import os
    import sys

    code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
    console.print(f"[yellow]stopped[/yellow] (exit {code}): the samples stored in {out} are kept; "
                  "re-run the same command to resume")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _eval_warnings(result) -> None:
    """Console warnings of an evaluation: errored samples and failed judge verdicts (both redone
    by re-running the same command)."""
    from rich.markup import escape

    errors = result.errors
    if errors["count"]:
        classes = ", ".join(f"{name} {n}" for name, n in errors["by_class"].items())
        first = errors["examples"][0]
        console.print(f"[yellow]warning:[/yellow] {errors['count']} of {errors['samples']} samples errored "
                      f"({classes}), {errors['treatment']}; first: {escape(first['question_id'])}#{first['sample']}: "
                      f"{escape(first['message'][:200])}; re-run the same command to retry them")
    if result.rejudged:
        console.print(f"re-judged {result.rejudged} failed judge verdicts")
    if result.judge_failures:
        console.print(f"[yellow]warning:[/yellow] {result.judge_failures} judge verdicts failed (stored with their "
                      "reason, scored per judge_failure); re-run the same command to re-judge exactly those")


@app.command()
def serve(
    model: str = typer.Option(..., "--model", help="Model folder or HF id to serve with vLLM."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: a free one)."),
    overrides: list[str] = typer.Option([], "--set", help="ServeConfig override KEY=VALUE (repeatable)."),
) -> None:
    """Start `vllm serve` with the flags Mini-o3 needs; waits for health; stops cleanly on Ctrl-C."""
    from mini_o3.evaluate.serve import ServeConfig, ServeError
    from mini_o3.evaluate.serve import serve as run_server
    from mini_o3.overrides import apply_overrides

    try:
        run_server(apply_overrides(ServeConfig(model=model, port=port), overrides), echo=console.print)
    except (ServeError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Working directory of the demo run."),
    n_test: int = typer.Option(12, "--n-test", min=1, help="Test questions to roll out."),
    seed: int = typer.Option(0, "--seed", min=0),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", min=1, help="Tiny-model tokens per turn."),
) -> None:
    """Tiny model + synthetic data + run_episode with the oracle and the tiny model as policies."""
    from mini_o3.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, n_test=n_test, seed=seed, max_new_tokens=max_new_tokens), console=console)


def _register_pipeline_commands() -> None:
    """`run`, `compile`, `upload`, `submit`, `schedule` and `stage` live with the KFP layer."""
    from mini_o3.kfp.commands import register

    register(app)


_register_pipeline_commands()

if __name__ == "__main__":  # pragma: no cover
    app()
