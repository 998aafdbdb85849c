"""The ``mini-o3 stage`` commands (registered on the main app): ``run URI`` runs a sealed request
(what Ray jobs and RayJobs run), ``sft`` / ``rl`` / ``eval`` build a request from flags and run it
in this process. Each prints the stage result as JSON; heavy imports stay inside the bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console(stderr=True)
SET_HELP = "Config override FIELD=VALUE (repeatable; the value is read as YAML)."


def _fail(message: str) -> None:
    from rich.markup import escape

    from mini_o3.redact import redact_text

    console.print(f"[red]error:[/red] {escape(redact_text(str(message)))}", soft_wrap=True)  # one line
    raise typer.Exit(code=2)


def _check_out_uri(uri: str) -> None:
    """A malformed ``--out-uri``, or a local one that cannot be a folder: one line, before any work."""
    from mini_o3 import storage
    from mini_o3.outdir import out_problem

    try:
        path = None if storage.is_remote(uri) else storage.local_path(uri)
    except storage.StorageError as exc:
        _fail(f"--out-uri {exc}")
    problem = out_problem(path, "--out-uri") if path is not None else None
    if problem:
        _fail(problem)


def _tracking(parent_run_id: Optional[str], tracking_uri: Optional[str]):
    from mini_o3.stages import Tracking

    return Tracking(parent_run_id or None, tracking_uri or None)


def _stage_errors() -> tuple[type[BaseException], ...]:
    from mini_o3.stages import StageError
    from mini_o3.storage import StorageError

    return (StageError, StorageError, ValueError, FileNotFoundError, RuntimeError)


def _run(request, work_dir: Optional[Path]) -> None:
    """Run ``request`` (``dispatch.run_stage``) and print its result, or one error line."""
    from mini_o3.dispatch import run_stage

    _check_out_uri(request.out_uri)
    try:
        result = run_stage(request, work=work_dir)
    except _stage_errors() as exc:
        _fail(str(exc))
    typer.echo(result.to_json())


def register(app: typer.Typer) -> None:
    """Add the ``stage`` group to ``app``."""
    stage_app = typer.Typer(help="Run one pipeline stage on URIs (what KFP pods, Ray jobs and RayJobs run).",
                            no_args_is_help=True)
    app.add_typer(stage_app, name="stage")
    work_help = "Work folder (kept; default: a temporary one)."

    @stage_app.command("run")
    def stage_run(
        request_uri: str = typer.Argument(..., metavar="URI", help="Sealed request folder (request.json inside) or a local request.json."),
        work_dir: Optional[Path] = typer.Option(None, "--work-dir", metavar="DIR", help=work_help),
    ) -> None:
        """Run the stage a sealed request describes (SFT, RL or evaluation); prints the result as JSON."""
        from pydantic import ValidationError

        from mini_o3.dispatch import read_request

        try:
            request = read_request(request_uri)
        except ValidationError as exc:
            _fail(f"request {request_uri}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        except _stage_errors() as exc:
            _fail(str(exc))
        _run(request, work_dir)

    @stage_app.command("sft")
    def stage_sft(
        data_uri: str = typer.Option(..., "--data-uri", metavar="URI", help="Sealed cold-start data folder (s3://... or a path)."),
        model: str = typer.Option(..., "--model", metavar="URI|HF_ID", help="Base model: sealed model URI or hub id (hf://org/name)."),
        out_uri: str = typer.Option(..., "--out-uri", metavar="URI", help="Output prefix: <out>/model and <out>/run are sealed."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP + " Fields: SFTConfig."),
        parent_run_id: Optional[str] = typer.Option(None, "--parent-run-id", metavar="RUN_ID", help="MLflow parent run (pipeline run)."),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", metavar="URI", help="MLflow tracking URI."),
        work_dir: Optional[Path] = typer.Option(None, "--work-dir", metavar="DIR", help=work_help),
    ) -> None:
        """LLaMA-Factory SFT from URIs to a sealed model URI; prints the result as JSON."""
        from mini_o3.stages import SFTRequest

        _run(SFTRequest(data_uri=data_uri, model=model, out_uri=out_uri, overrides=overrides,
                        tracking=_tracking(parent_run_id, tracking_uri)), work_dir)

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
        work_dir: Optional[Path] = typer.Option(None, "--work-dir", metavar="DIR", help=work_help),
    ) -> None:
        """GRPO from URIs to a sealed policy URI; prints the result as JSON."""
        from mini_o3.stages import RLRequest

        _run(RLRequest(engine=engine, model_uri=model_uri, train_uris=train_uri, val_uris=val_uri, out_uri=out_uri,
                       overrides=overrides, nnodes=nnodes, gpus_per_node=gpus_per_node,
                       tracking=_tracking(parent_run_id, tracking_uri)), work_dir)

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
        work_dir: Optional[Path] = typer.Option(None, "--work-dir", metavar="DIR", help=work_help),
    ) -> None:
        """Avg@k from URIs to a sealed report folder; prints the result as JSON."""
        from mini_o3.stages import EvalRequest

        _run(EvalRequest(model_uri=model_uri, bench_uris=bench_uri, out_uri=out_uri, k=k, backend=backend,
                         overrides=overrides, judge=judge, tracking=_tracking(parent_run_id, tracking_uri)), work_dir)
