"""CLI commands of the pipeline layer (registered on the main ``mini-o3`` app): ``run``,
``compile``, ``upload``, ``submit``, ``schedule``, ``rayjob-manifest``. Heavy imports (kfp, torch)
stay inside the command bodies; the ``stage`` group lives in ``mini_o3.dispatch.commands``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console(stderr=True)
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


def register(app: typer.Typer) -> None:
    """Add the pipeline commands to ``app``."""
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
        parameters plus --param ones, after the request it runs (as comments): review it, diff it or
        `kubectl apply --dry-run=server -f -`."""
        from mini_o3.kfp.client import ClientError, resolve_params
        from mini_o3.kfp.review import review_text
        from mini_o3.stages import StageError

        try:
            values = resolve_params(_package("train"), params)
            text = review_text(stage, values, root=_repo_root(), run_id=run_id, namespace=namespace)
        except (ClientError, StageError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(text, nl=False)

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
