"""``mini-o3``: the command line. Thin commands over the library; heavy imports stay lazy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="Mini-o3 pipelines: multi-turn visual search with a crop tool, on Kubeflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "openai:URL[#model]" keeps its brackets
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

    console.print(f"[red]error:[/red] {escape(redact_text(str(message)))}", soft_wrap=True)  # one line
    raise typer.Exit(code=code)


def _check_out(out: Path, flag: str = "--out") -> None:
    """One line when ``out`` cannot be the output folder (``mini_o3.outdir.out_problem``)."""
    from mini_o3.outdir import out_problem

    problem = out_problem(out, flag)
    if problem:
        _fail(problem)


def _cli_words(message: str, words: dict[str, str]) -> str:
    """A library message in the words the user typed (``out_dir`` → ``--out``, ...)."""
    for library, flag in words.items():
        message = message.replace(library, flag)
    return message


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Dataset directory to write (BASE_IMAGE_DIR is its parent)."),
    n_train: int = typer.Option(200, "--n-train", metavar="N", min=0, help="Train questions (also the cold-start source)."),
    n_test: int = typer.Option(100, "--n-test", metavar="N", min=0, help="Test (val.json) questions."),
    seed: int = typer.Option(0, "--seed", metavar="N", min=0, help="Seed; the same seed writes byte-identical files."),
    width_range: Optional[tuple[int, int]] = typer.Option(None, "--width-range", metavar="LOW HIGH", help="Canvas width LOW HIGH in px."),
    height_range: Optional[tuple[int, int]] = typer.Option(None, "--height-range", metavar="LOW HIGH", help="Canvas height LOW HIGH in px."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace a non-empty --out directory."),
) -> None:
    """Generate the synthetic visual-search benchmark and its oracle cold-start parquet."""
    from pydantic import ValidationError

    from mini_o3.data.synthetic import SynthConfig, generate

    from mini_o3.overrides import describe_errors

    if n_train + n_test == 0:
        _fail("--n-train and --n-test are both 0: nothing to generate")
    _check_out(out)
    overrides = {k: v for k, v in {"width_range": width_range, "height_range": height_range}.items() if v}
    words = {"width_range": "--width-range", "height_range": "--height-range", "out_dir": "--out",
             "pass overwrite=True": "pass --overwrite"}
    try:
        config = SynthConfig(**overrides)
        manifest = generate(config, out, n_train=n_train, n_test=n_test, seed=seed, overwrite=overwrite, progress=True)
    except ValidationError as exc:
        _fail(_cli_words(f"invalid synthetic config: {describe_errors(exc)}", words))
    except (ValueError, FileExistsError, NotADirectoryError) as exc:
        _fail(_cli_words(str(exc), words))
    counts = ", ".join(f"{split} {summary.count}" for split, summary in manifest.splits.items())
    console.print(f"[green]wrote[/green] {out}: {counts}, cold-start rows {manifest.coldstart.rows}")


prepare_app = typer.Typer(help="Data stage: cold-start SFT data and benchmark / RL sets.", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")
SET_HELP = "Config override FIELD=VALUE (repeatable; the value is read as YAML)."


@prepare_app.command("coldstart")
def prepare_coldstart_cmd(
    source: str = typer.Option(..., "--source", metavar="HF_ID|DIR|FILE", help="HF dataset id, a folder of parquet files, or one parquet file."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder (LLaMA-Factory dataset_dir)."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP + " Fields: ColdstartPrepConfig."),
) -> None:
    """Cold-start parquet → LLaMA-Factory sharegpt JSON + original image bytes + dataset_info.json."""
    from mini_o3.data.coldstart import ColdstartPrepConfig, ColdstartPrepError, prepare_coldstart
    from mini_o3.overrides import apply_overrides

    _check_out(out)
    try:
        config = apply_overrides(ColdstartPrepConfig(), overrides)
        summary = prepare_coldstart(source, out, config, progress=True)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, ColdstartPrepError) as exc:
        _fail(str(exc))
    console.print(f"[green]wrote[/green] {out}: {summary.rows_out} of {summary.rows_in} rows, {summary.rows_rejected} rejected")


@prepare_app.command("bench")
def prepare_bench_cmd(
    name: str = typer.Option(..., "--name", metavar="NAME", help="Benchmark: see `mini-o3 prepare list`."),
    source: str = typer.Option(..., "--source", metavar="HF_ID|DIR|FILE", help="HF dataset id or a local folder / file of that benchmark."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder; BASE_IMAGE_DIR is its parent."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP + " Fields: BenchPrepConfig."),
) -> None:
    """A benchmark or RL set → unified parquet + Mini-o3 train.json / val.json + images."""
    from mini_o3.data.bench import BenchPrepConfig, prepare_bench
    from mini_o3.overrides import apply_overrides

    _check_out(out)
    try:
        config = apply_overrides(BenchPrepConfig(), overrides)
        summary = prepare_bench(name, source, out, config, progress=True)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        _fail(_cli_words(str(exc), {"out_dir": "--out", "pass overwrite=True": "pass --set overwrite=true"}))
    console.print(f"[green]wrote[/green] {out}: {summary.rows_out} rows, {summary.rejected} rejected")


@prepare_app.command("list")
def prepare_list() -> None:
    """The benchmark names `prepare bench` knows, with their hub ids and splits."""
    from rich.markup import escape

    from mini_o3.data.bench import BENCHMARKS

    out = Console(highlight=False, soft_wrap=True)  # soft wrap: a hub id is never cut or broken
    for spec in BENCHMARKS.values():
        out.print(f"[bold]{spec.name}[/bold]  split {spec.split}; data_source {', '.join(spec.data_sources)}")
        out.print(f"  hub id: {spec.hub_id or '-'}")
        out.print(f"  {escape(spec.description)}")


@app.command("tiny-model")
def tiny_model(
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Directory for the HF model (config, weights, tokenizer, processor)."),
    seed: int = typer.Option(0, "--seed", metavar="N", min=0, help="Weight-init seed; the same seed writes identical weights."),
    profile: str = typer.Option("parity", "--profile", metavar="parity|learn",
                                help="parity: the real Qwen vocabulary (token-parity tests); learn: the learning "
                                     "profile's model (reduced vocabulary, wider and deeper; learns on a CPU)."),
) -> None:
    """Build a random-init tiny Qwen2.5-VL with an offline Qwen tokenizer (a few MB)."""
    from mini_o3.tiny import TINY_PROFILES, build_tiny_model

    if profile not in TINY_PROFILES:
        _fail(f"--profile {profile!r} is not a tiny-model profile; expected one of {', '.join(TINY_PROFILES)}")
    _check_out(out)
    try:
        path = build_tiny_model(out, seed=seed, progress=True, spec=TINY_PROFILES[profile])
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"[green]wrote[/green] {path}")


@app.command()
def sft(
    data: Path = typer.Option(..., "--data", metavar="DIR", help="Prepared cold-start folder (`mini-o3 prepare coldstart --out`)."),
    model: str = typer.Option(..., "--model", metavar="DIR|HF_ID", help="Base model: HF id or local folder."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Run folder; re-running into it resumes from its last checkpoint."),
    overrides: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help="SFTConfig override KEY=VALUE (repeatable; dotted keys: launch.mode=ray, extra_args.X=1)."
    ),
) -> None:
    """Cold-start SFT with LLaMA-Factory from one typed config (seed recipe defaults)."""
    from mini_o3.sft import SFTError, run_sft

    _check_out(out)
    try:
        result = run_sft(data, model, out, overrides=overrides, progress=True)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except SFTError as exc:
        _fail(str(exc))
    console.print(f"[green]trained[/green] {result.model_dir} (step {result.global_step}, loss {result.final_loss})")


@app.command()
def rl(
    engine: Literal["local", "verl"] = typer.Option("local", "--engine", metavar="local|verl", help="RL engine: local (reference, CPU / 1 GPU) or verl (Ray + vLLM, GPUs)."),
    model: str = typer.Option(..., "--model", metavar="DIR|HF_ID", help="Policy to start from (the SFT model folder)."),
    train: list[Path] = typer.Option(..., "--train", metavar="DIR|FILE", help="Unified parquet file or folder with train.parquet (repeatable)."),
    val: list[Path] = typer.Option([], "--val", metavar="DIR|FILE", help="Unified parquet file or folder with val.parquet (repeatable)."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Run folder; re-running into it resumes from the last checkpoint."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="RLConfig override KEY=VALUE (repeatable; dotted keys)."),
    nnodes: int = typer.Option(1, "--nnodes", metavar="N", min=1, help="verl: GPU nodes (trainer.nnodes)."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", metavar="N", min=1, help="verl: GPUs per node (trainer.n_gpus_per_node)."),
    verl_sets: list[str] = typer.Option([], "--verl-set", metavar="KEY=VALUE", help="verl: raw hydra override appended last (repeatable), e.g. LoRA."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="verl: write the files and print the command instead of running it."),
) -> None:
    """GRPO with Mini-o3 semantics (multi-turn crop-tool rollouts through run_episode)."""
    _check_out(out)
    if engine == "local":
        if dry_run or verl_sets:
            _fail("--dry-run and --verl-set apply to --engine verl only")
        from mini_o3.rl.local import run_rl_local
        from mini_o3.rl.local.collect import NotEnoughValidGroups

        try:
            result = run_rl_local(model, list(train), list(val), out, overrides=overrides, progress=True)
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        except NotEnoughValidGroups as exc:  # a run that cannot learn: one line, not a traceback
            _fail(str(exc), code=1)
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
    policy: str = typer.Option(..., "--policy", metavar="SPEC", help="openai:URL[#served-model], vllm:MODEL (served for the run) or local:MODEL_DIR."),
    bench: list[Path] = typer.Option(..., "--bench", metavar="DIR", help="Prepared benchmark folder (repeatable)."),
    k: Optional[int] = typer.Option(None, "--k", metavar="N", min=1, help="Samples per question (default: the paper's k of each benchmark, from its BenchSpec; see README, Evaluation stage)."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder; re-running into it resumes finished samples."),
    protocol: Optional[Literal["paper", "rule"]] = typer.Option(
        None, "--protocol", metavar="paper|rule", help="Scoring: paper (default; the LLM judge scores every sample, as the paper) or rule "
                                 "(rule scorers only; numbers not comparable to the paper's)."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", metavar="MODEL", help="Judge model (default gpt-4o-2024-11-20, the paper's)."),
    judge_base_url: Optional[str] = typer.Option(
        None, "--judge-base-url", metavar="URL", help="Judge endpoint (OpenAI-compatible, or the Azure endpoint with --judge-api azure); "
                                       "default: END_POINT (azure) or OPENAI_BASE_URL from the environment."),
    judge_api: Optional[Literal["auto", "openai", "azure"]] = typer.Option(None, "--judge-api", metavar="auto|openai|azure", help="auto (azure when END_POINT is set), openai or azure."),
    judge_cache: Optional[Path] = typer.Option(None, "--judge-cache", metavar="FILE", help="sqlite file caching judge verdicts across runs."),
    judge_failure: Optional[Literal["score_zero", "exclude"]] = typer.Option(
        None, "--judge-failure", metavar="score_zero|exclude", help="A judge call failing after its retries: score_zero (default, as upstream) or exclude."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=EVAL_SET_HELP),
    gpus: int = typer.Option(1, "--gpus", metavar="N", min=1, help="vllm: GPUs for the server (split into tensor-parallel x replicas)."),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", metavar="URI", help="MLflow tracking / registry URI for --policy local:models:/NAME@ALIAS "
                                                    "or vllm:models:/NAME/VERSION (default: MLFLOW_TRACKING_URI)."),
) -> None:
    """Avg@k over benchmarks with multi-turn crop-tool rollouts; report, plots and trajectory viewer.

    Scored under the paper's protocol by default (judge credentials: OPENAI_API_KEY, or END_POINT,
    API_VERSION and API_KEY for Azure as the paper; --judge-base-url for a keyless server).
    """
    from mini_o3.evaluate.runner import EvalError, resolve_config, run_eval

    _check_out(out)
    flags = {"--protocol": ("protocol", protocol), "--judge-model": ("judge.model", judge_model),
             "--judge-base-url": ("judge.base_url", judge_base_url), "--judge-api": ("judge.api", judge_api),
             "--judge-cache": ("judge.cache_path", None if judge_cache is None else str(judge_cache)),
             "--judge-failure": ("judge_failure", judge_failure), "--k": ("k", k)}
    try:
        config = _with_flags(resolve_config(None, overrides), {f: v for f, v in flags.items() if v[1] is not None})
        console.print(f"scoring protocol [bold]{config.protocol}[/bold]"
                      + (f" (judge {config.judge.model})" if config.protocol == "paper"
                         else ": rule scorers only, numbers not comparable to the paper's"))
        spec, resolved = _registry_policy(policy, tracking_uri)
        result = run_eval(spec, list(bench), out, config, progress=True, gpus=gpus,
                          model=resolved.to_dict() if resolved else None)
    except (EvalError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except (KeyboardInterrupt, SystemExit) as exc:
        _stopped(exc, out)
    _eval_warnings(result)
    console.print(f"[green]wrote[/green] {result.files.get('report.md', out)}")
    problem = result.failure()
    if problem:
        _fail(problem, code=1)


def _registry_policy(policy: str, tracking_uri: Optional[str]):
    """(policy spec, ResolvedModel or None): a ``models:/`` model of a local: / vllm: spec resolved
    through the MLflow Model Registry now, its sealed artifact fetched."""
    from mini_o3.registry import RegistryError, resolve_policy
    from mini_o3.storage import StorageError
    from mini_o3.tracking import resolve_tracking_uri

    try:
        spec, resolved = resolve_policy(policy, resolve_tracking_uri(tracking_uri, None))
    except (RegistryError, StorageError) as exc:
        _fail(f"--policy {policy}: {exc}")
    if resolved is not None:
        console.print(f"policy model {resolved.ref} → {resolved.label}: {resolved.uri} (digest {resolved.digest})")
    return spec, resolved


@app.command()
def promote(
    model: str = typer.Option("mini-o3", "--model", metavar="NAME", help="Registered model name."),
    from_alias: str = typer.Option("candidate", "--from", metavar="ALIAS", help="Alias of the version to promote."),
    to_alias: str = typer.Option("champion", "--to", metavar="ALIAS", help="Alias to move when it is better."),
    benchmarks: Optional[str] = typer.Option(None, "--benchmarks", metavar="A,B", help="Benchmarks that must improve (default: every one evaluated)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", metavar="URI", help="MLflow tracking / registry URI (default: MLFLOW_TRACKING_URI)."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="Decide and print, move nothing, tag nothing."),
) -> None:
    """Move --to to the --from version only when it beats the --to version on every benchmark (paired 95% CI
    excluding 0, same questions, latest evaluations of both in the mini-o3-history/NAME experiment); the
    reason goes into the version's tags. Exit 0: promoted (or already there), 1: not promoted."""
    from mini_o3.registry import RegistryError
    from mini_o3.stages.promote import promote as run_promote
    from mini_o3.storage import StorageError
    from mini_o3.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, None)
    if uri is None:
        _fail("--tracking-uri is not given and MLFLOW_TRACKING_URI is not set: the registry is needed to promote")
    names = [b.strip() for b in benchmarks.split(",") if b.strip()] if benchmarks else None
    try:
        result = run_promote(tracking_uri=uri, model=model, from_alias=from_alias, to_alias=to_alias,
                             benchmarks=names, dry_run=dry_run)
    except (RegistryError, StorageError, FileNotFoundError) as exc:
        _fail(str(exc))
    verb = "promoted" if result.promoted else "not promoted"
    print(f"{model} v{result.candidate} (@{from_alias}) {verb} to @{to_alias}"
          + (f" (was v{result.champion})" if result.champion and result.promoted else "") + f": {result.reason}"
          + (" [dry run: nothing changed]" if dry_run else ""))
    if not result.promoted and result.champion != result.candidate:
        raise typer.Exit(code=1)


def _with_flags(config, flags: dict[str, tuple[str, object]]):
    """``config`` with each flag's setting (flags win over ``--set``); a bad value fails naming the flag."""
    from pydantic import ValidationError

    from mini_o3.overrides import describe_errors

    for flag, (key, value) in flags.items():
        data = config.model_dump()
        *parents, name = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[name] = value
        try:
            config = type(config).model_validate(data)
        except ValidationError as exc:
            _fail(f"{flag} {value!r}: {describe_errors(exc).split(': ', 1)[-1]}")
    return config


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
    model: str = typer.Option(..., "--model", metavar="DIR|HF_ID", help="Model folder or HF id to serve with vLLM."),
    port: int = typer.Option(8000, "--port", metavar="PORT", min=0, max=65535, help="Port (0: a free one)."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="ServeConfig override KEY=VALUE (repeatable)."),
) -> None:
    """Start `vllm serve` with the flags Mini-o3 needs; waits for health; stops cleanly on Ctrl-C."""
    from mini_o3.rollout.serve import ServeConfig, ServeError
    from mini_o3.rollout.serve import serve as run_server
    from mini_o3.overrides import apply_overrides

    try:
        run_server(apply_overrides(ServeConfig(model=model, port=port), overrides), echo=console.print)
    except (ServeError, ValueError) as exc:
        _fail(str(exc))


def _register_pipeline_commands() -> None:
    """`run`, `compile`, `upload`, `submit`, `schedule` live with the KFP layer, `stage` with dispatch."""
    from mini_o3.dispatch.commands import register as register_stage
    from mini_o3.kfp.commands import register

    register(app)
    register_stage(app)


_register_pipeline_commands()

if __name__ == "__main__":  # pragma: no cover
    app()
