"""CLI commands of the pipeline layer (registered on the main ``mini-o3`` app): ``run``,
``compile``, ``upload``, ``submit``, ``schedule``, ``rayjob-manifest`` and the ``stage`` group (the entrypoints that
Ray jobs and RayJobs run). Heavy imports (kfp, torch) stay inside the command bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console(stderr=True)
SET_HELP = "Config override FIELD=VALUE (repeatable; the value is read as YAML)."
PARAM_HELP = "Pipeline parameter NAME=VALUE (repeatable; YAML values; the pN_ phase prefix may be left out)."
HOST_HELP = "KFP API endpoint, e.g. http://localhost:8080 (env KF_PIPELINES_ENDPOINT)."
NS_HELP = "Kubernetes namespace (multi-user KFP: your profile namespace)."


def _fail(message: str) -> None:
    from rich.markup import escape

    from mini_o3.redact import redact_text

    console.print(f"[red]error:[/red] {escape(redact_text(str(message)))}", soft_wrap=True)  # one line
    raise typer.Exit(code=2)


def _check_out(out: Path, flag: str) -> None:
    from mini_o3.outdir import out_problem

    problem = out_problem(out, flag)
    if problem:
        _fail(problem)


def _check_out_uri(uri: str) -> None:
    """A malformed ``--out-uri``, or a local one that cannot be a folder: one line, before any work."""
    from mini_o3 import storage

    try:
        path = None if storage.is_remote(uri) else storage.local_path(uri)
    except storage.StorageError as exc:
        _fail(f"--out-uri {exc}")
    if path is not None:
        _check_out(path, "--out-uri")


def _tracking(parent_run_id: Optional[str], tracking_uri: Optional[str]):
    from mini_o3.stages import Tracking

    return Tracking(parent_run_id or None, tracking_uri or None)


def _stage_errors() -> tuple[type[BaseException], ...]:
    from mini_o3.stages import StageError
    from mini_o3.storage import StorageError

    return (StageError, StorageError, ValueError, FileNotFoundError, RuntimeError)


def register(app: typer.Typer) -> None:
    """Add the pipeline commands to ``app``."""
    stage_app = typer.Typer(help="Run one pipeline stage on URIs (what KFP pods, Ray jobs and RayJobs run).",
                            no_args_is_help=True)
    app.add_typer(stage_app, name="stage")

    @stage_app.command("sft")
    def stage_sft(
        data_uri: str = typer.Option(..., "--data-uri", metavar="URI", help="Sealed cold-start data folder (s3://... or a path)."),
        model: str = typer.Option(..., "--model", metavar="URI|HF_ID", help="Base model: sealed model URI or hub id (hf://org/name)."),
        out_uri: str = typer.Option(..., "--out-uri", metavar="URI", help="Output prefix: <out>/model and <out>/run are sealed."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP + " Fields: SFTConfig."),
        parent_run_id: Optional[str] = typer.Option(None, "--parent-run-id", metavar="RUN_ID", help="MLflow parent run (pipeline run)."),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", metavar="URI", help="MLflow tracking URI."),
        work_dir: Optional[Path] = typer.Option(None, "--work-dir", metavar="DIR", help="Work folder (kept; default: a temporary one)."),
    ) -> None:
        """LLaMA-Factory SFT from URIs to a sealed model URI; prints the result as JSON."""
        from mini_o3.stages import sft_stage

        _check_out_uri(out_uri)
        try:
            result = sft_stage(data_uri, model, out_uri, overrides=overrides,
                               tracking=_tracking(parent_run_id, tracking_uri), work=work_dir)
        except _stage_errors() as exc:
            _fail(str(exc))
        typer.echo(result.to_json())

    @stage_app.command("rl")
    def stage_rl(
        engine: str = typer.Option("local", "--engine", metavar="local|verl", help="local (reference engine) or verl (Ray cluster)."),
        model_uri: str = typer.Option(..., "--model-uri", metavar="URI|HF_ID", help="Policy to start from: sealed URI or hub id."),
        train_uri: list[str] = typer.Option(..., "--train-uri", metavar="URI", help="Sealed benchmark collection / folder with train.parquet (repeatable)."),
        val_uri: list[str] = typer.Option([], "--val-uri", metavar="URI", help="Sealed collection / folder with val.parquet (repeatable)."),
        out_uri: str = typer.Option(..., "--out-uri", metavar="URI", help="Output prefix: <out>/model and <out>/run are sealed."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP + " Fields: RLConfig."),
        nnodes: int = typer.Option(1, "--nnodes", metavar="N", min=1, help="verl: nodes (Ray worker pods)."),
        gpus_per_node: int = typer.Option(8, "--gpus-per-node", metavar="N", min=0, help="verl: GPUs per node."),
        parent_run_id: Optional[str] = typer.Option(None, "--parent-run-id", metavar="RUN_ID", help="MLflow parent run (pipeline run)."),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", metavar="URI", help="MLflow tracking URI."),
        work_dir: Optional[Path] = typer.Option(None, "--work-dir", metavar="DIR", help="Work folder (kept; default: a temporary one)."),
    ) -> None:
        """GRPO from URIs to a sealed policy URI; prints the result as JSON."""
        from mini_o3.stages import rl_stage

        _check_out_uri(out_uri)
        try:
            result = rl_stage(engine, model_uri, train_uri, val_uri, out_uri, overrides=overrides, nnodes=nnodes,
                              gpus_per_node=gpus_per_node, tracking=_tracking(parent_run_id, tracking_uri),
                              work=work_dir)
        except _stage_errors() as exc:
            _fail(str(exc))
        typer.echo(result.to_json())

    @stage_app.command("eval")
    def stage_eval(
        model_uri: str = typer.Option(..., "--model-uri", metavar="URI|HF_ID", help="Sealed model URI or hub id."),
        bench_uri: list[str] = typer.Option(..., "--bench-uri", metavar="URI", help="Sealed benchmark collection / folder (repeatable)."),
        out_uri: str = typer.Option(..., "--out-uri", metavar="URI", help="Sealed output folder (report, plots, samples)."),
        k: Optional[int] = typer.Option(None, "--k", metavar="N", min=1, help="Samples per question (default: the paper's per benchmark)."),
        backend: str = typer.Option("vllm", "--backend", metavar="vllm|local|openai:URL[#model]", help="vllm, local, or openai:URL[#model]."),
        judge: bool = typer.Option(False, "--judge/--no-judge", help="LLM judge for free-form answers (env: judge secret)."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP + " Fields: EvalConfig."),
        parent_run_id: Optional[str] = typer.Option(None, "--parent-run-id", metavar="RUN_ID", help="MLflow parent run (pipeline run)."),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", metavar="URI", help="MLflow tracking URI."),
        work_dir: Optional[Path] = typer.Option(None, "--work-dir", metavar="DIR", help="Work folder (kept; default: a temporary one)."),
    ) -> None:
        """Avg@k from URIs to a sealed report folder; prints the result as JSON."""
        from mini_o3.stages import eval_stage

        _check_out_uri(out_uri)
        try:
            result = eval_stage(model_uri, bench_uri, out_uri, k=k, backend=backend, overrides=overrides, judge=judge,
                                tracking=_tracking(parent_run_id, tracking_uri), work=work_dir)
        except _stage_errors() as exc:
            _fail(str(exc))
        typer.echo(result.to_json())

    @app.command("run")
    def run_cmd(
        out: Path = typer.Option(Path("runs/embedded"), "--out", metavar="DIR", help="Run folder (artifacts/, mlruns/, kfp/)."),
        params: list[str] = typer.Option([], "--param", metavar="NAME=VALUE", help=PARAM_HELP),
        profile: str = typer.Option("learn", "--profile", metavar="learn|smoke", envvar="MINI_O3_PROFILE",
                                    help="learn (make demo: a model that learns to zoom, base -> SFT -> RL with CIs) or "
                                         "smoke (the wiring in about a minute)."),
        seed: int = typer.Option(0, "--seed", min=0, metavar="N", help="Seed of the tiny model and the synthetic "
                                                                        "data (and, other than 0, of SFT, RL and eval)."),
        verbose: bool = typer.Option(False, "--verbose", help="Also show kfp.local's executor input dumps and "
                                                               "component-loading lines."),
    ) -> None:
        """Run the train pipeline embedded (kfp.local, tiny model, synthetic data, CPU); prints where the report is.

        SIGTERM / Ctrl-C stops every task process and marks the MLflow runs KILLED (exit 143 / 130)."""
        from mini_o3.kfp.client import ClientError, resolve_params
        from mini_o3.kfp.local_run import PROFILES, EmbeddedConfig, run_embedded

        if profile not in PROFILES:
            _fail(f"--profile {profile!r} is not an embedded profile; expected one of {', '.join(PROFILES)}")
        _check_out(out, "--out")
        try:
            values = resolve_params(_package("train"), params)
        except ClientError as exc:
            _fail(str(exc))
        try:
            run_embedded(EmbeddedConfig(out=out, profile=profile, seed=seed, verbose=verbose), values, console=console)
        except RuntimeError as exc:
            _fail(f"embedded run failed: {exc}")
        except KeyboardInterrupt:
            raise typer.Exit(code=130) from None  # click would print "Aborted!" and exit 1

    @app.command("rayjob-manifest")
    def rayjob_manifest_cmd(
        stage: str = typer.Option(..., "--stage", metavar="rl|sft", help="rl or sft."),
        params: list[str] = typer.Option([], "--param", metavar="NAME=VALUE", help=PARAM_HELP + " Of mini-o3-train."),
        run_id: str = typer.Option("run-id", "--run-id", metavar="RUN_ID", help="KFP run id the URIs and the RayJob name are made of."),
        namespace: str = typer.Option("default", "--namespace", metavar="NAMESPACE", help="Namespace the run executes in."),
    ) -> None:
        """Print (YAML) the RayJob the train pipeline's rl / sft step would submit with its default
        parameters plus --param ones: review it, diff it or `kubectl apply --dry-run=server -f -`."""
        import yaml

        from mini_o3.kfp.client import ClientError, resolve_params
        from mini_o3.kfp.review import rayjob_for
        from mini_o3.stages import StageError

        try:
            values = resolve_params(_package("train"), params)
            manifest = rayjob_for(stage, values, root=_repo_root(), run_id=run_id, namespace=namespace)
        except (ClientError, StageError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(yaml.safe_dump(manifest, sort_keys=False, width=120), nl=False)

    @app.command("compile")
    def compile_cmd(
        out_dir: Path = typer.Option(Path("."), "--out-dir", metavar="DIR", help="Where pipelines/ and components/ go."),
        check: bool = typer.Option(False, "--check", help="Only check the files are up to date (exit 1 when stale)."),
    ) -> None:
        """Compile pipelines/{train,evaluate}.yaml and components/*.yaml (images from MINI_O3_IMAGE_*)."""
        from mini_o3.kfp.compile import compile_all, stale_files

        if check:
            stale = stale_files(out_dir)
            if stale:
                console.print(f"[red]stale:[/red] {', '.join(stale)}; run `mini-o3 compile`")
                raise typer.Exit(code=1)
            console.print("[green]compiled pipelines and components are up to date[/green]")
            return
        for path in compile_all(out_dir):
            console.print(f"[green]wrote[/green] {path}")

    @app.command("upload")
    def upload_cmd(
        host: Optional[str] = typer.Option(None, "--host", metavar="URL", envvar="KF_PIPELINES_ENDPOINT", help=HOST_HELP),
        namespace: Optional[str] = typer.Option(None, "--namespace", metavar="NAMESPACE", help=NS_HELP),
    ) -> None:
        """Upload both pipelines, or reuse them: a version per content hash of the compiled package."""
        from mini_o3.kfp.client import connect, upload

        client = _connect(connect, host, namespace)
        for pipeline in ("train", "evaluate"):
            done = _api(lambda p=pipeline: upload(client, p, _repo_root(), namespace))
            state = "uploaded" if done.created_version else "reused"
            typer.echo(f"{done.name}\tpipeline_id={done.pipeline_id}\tversion_id={done.version_id}\t"
                       f"version={done.version_name}\t{state}")

    @app.command("submit")
    def submit_cmd(
        host: Optional[str] = typer.Option(None, "--host", metavar="URL", envvar="KF_PIPELINES_ENDPOINT", help=HOST_HELP),
        pipeline: str = typer.Option("train", "--pipeline", metavar="train|evaluate", help="train or evaluate."),
        params: list[str] = typer.Option([], "--param", metavar="NAME=VALUE", help=PARAM_HELP),
        experiment: str = typer.Option("mini-o3", "--experiment", metavar="NAME", help="KFP experiment (created if missing)."),
        run_name: Optional[str] = typer.Option(None, "--run-name", metavar="NAME", help="Run name (default: pipeline + time)."),
        namespace: Optional[str] = typer.Option(None, "--namespace", metavar="NAMESPACE", help=NS_HELP),
        wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish (exit 1 unless it succeeded)."),
        timeout: int = typer.Option(7 * 24 * 3600, "--timeout", metavar="SECONDS", min=1, help="--wait limit in seconds."),
    ) -> None:
        """Start a run of a pipeline (uploaded or reused first) in an experiment."""
        from mini_o3.kfp.client import ClientError, connect, resolve_params, submit

        try:
            values = resolve_params(_package(pipeline), params)
        except ClientError as exc:
            _fail(str(exc))
        client = _connect(connect, host, namespace)
        uploaded, run = _api(lambda: submit(client, pipeline, values, experiment=experiment, run_name=run_name,
                                            root=_repo_root(), namespace=namespace))
        typer.echo(f"run_id={run.run_id}\tpipeline={uploaded.name}\tversion={uploaded.version_name}")
        if wait:
            done = _api(lambda: client.wait_for_run_completion(run.run_id, timeout=timeout))
            typer.echo(f"state={done.state}")
            if str(done.state).upper() != "SUCCEEDED":
                raise typer.Exit(code=1)

    @app.command("schedule")
    def schedule_cmd(
        host: Optional[str] = typer.Option(None, "--host", metavar="URL", envvar="KF_PIPELINES_ENDPOINT", help=HOST_HELP),
        cron: str = typer.Option(..., "--cron", metavar="CRON", help="5-field cron (min hour dom month dow), 6-field (seconds first) or @daily."),
        name: str = typer.Option("mini-o3-evaluate-recurring", "--name", metavar="NAME", help="Recurring run name."),
        experiment: str = typer.Option("mini-o3-eval", "--experiment", metavar="NAME", help="KFP experiment (created if missing)."),
        params: list[str] = typer.Option([], "--param", metavar="NAME=VALUE", help=PARAM_HELP + " Of mini-o3-evaluate."),
        namespace: Optional[str] = typer.Option(None, "--namespace", metavar="NAMESPACE", help=NS_HELP),
        max_concurrency: int = typer.Option(1, "--max-concurrency", metavar="N", min=1, help="Runs of this schedule at once."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Create without asking."),
    ) -> None:
        """Schedule the evaluate pipeline: shows KFP's 6-field cron and the next three fire times, then creates it."""
        from mini_o3.kfp.client import (
            TIMEZONE_NOTE,
            ClientError,
            connect,
            plan_schedule,
            resolve_params,
            schedule,
        )

        try:
            values = resolve_params(_package("evaluate"), params)
            kfp_cron, times = plan_schedule(cron)
        except (ClientError, ValueError) as exc:
            _fail(str(exc))

        def confirm(kfp_expr, fire_times) -> bool:
            console.print(f"cron for KFP (seconds first): [bold]{kfp_expr}[/bold]")
            for t in fire_times:
                console.print(f"  next: {t:%Y-%m-%d %H:%M:%S %a}")
            console.print(f"  note: {TIMEZONE_NOTE}")
            return yes or typer.confirm(f"create recurring run {name!r}?", default=False)

        if not confirm(kfp_cron, times):
            console.print("nothing created")
            raise typer.Exit(code=1)
        client = _connect(connect, host, namespace)
        uploaded, made = _api(lambda: schedule(client, values, cron=cron, name=name, experiment=experiment,
                                               max_concurrency=max_concurrency, root=_repo_root(),
                                               namespace=namespace))
        typer.echo(f"recurring_run_id={made.recurring_run_id}\tcron={kfp_cron}\tpipeline={uploaded.name}\t"
                   f"version={uploaded.version_name}")


def _package(pipeline: str) -> Path:
    from mini_o3.kfp.client import ClientError, package_path

    try:
        return package_path(pipeline, _repo_root())
    except ClientError as exc:
        _fail(str(exc))
        raise


def _repo_root() -> Path:
    """The folder holding ``pipelines/``: ``$MINI_O3_PIPELINES_DIR``'s parent (the base image sets
    it), else the working directory, else the source checkout."""
    import os

    configured = os.environ.get("MINI_O3_PIPELINES_DIR")
    if configured:
        return Path(configured).parent
    here = Path.cwd()
    if (here / "pipelines").is_dir():
        return here
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "pipelines").is_dir() else here


def _connect(connect, host: Optional[str], namespace: Optional[str]):
    if not host:
        _fail("--host is required (or set KF_PIPELINES_ENDPOINT), e.g. http://localhost:8080")
    try:
        return connect(host, namespace)
    except Exception as exc:  # noqa: BLE001 - kfp.Client config / auth errors, reported with the host
        _fail(f"cannot create a KFP client for {host}: {type(exc).__name__}: {exc}")


def _api(call):
    """Run a KFP API call (kfp.Client's own prints, e.g. UI links, go to stderr so stdout stays
    machine-readable); API and connection errors become one clear line."""
    import contextlib
    import sys

    from mini_o3.kfp.client import ClientError

    try:
        with contextlib.redirect_stdout(sys.stderr):
            return call()
    except ClientError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - kfp_server_api.ApiException, urllib3 errors
        status = getattr(exc, "status", None)
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        _fail(f"KFP API call failed{f' (HTTP {status})' if status else ''}: {reason}")
