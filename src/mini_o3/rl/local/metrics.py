"""Step metrics: always ``metrics.jsonl`` in the run folder; a console line (rich) with
``progress``; MLflow when ``MLFLOW_TRACKING_URI`` is set (the run id is kept in the run folder so
a resumed run logs into the same MLflow run)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

MLFLOW_RUN_FILE = "mlflow_run_id"

#: Metrics shown on the console line, in order.
CONSOLE_KEYS = ("rollout/reward", "rollout/accuracy", "rollout/exceed_ratio", "rollout/groups_with_variance",
                "batch/filtered_groups",
                "actor/pg_loss", "actor/entropy", "actor/clip_fraction", "perf/tokens_per_s", "perf/host_rss_gb", "timing/step")


class MetricsLogger:
    def __init__(self, run_dir: Path, *, progress: bool = True, params: dict[str, Any] | None = None,
                 run_name: str = "mini-o3-rl-local") -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self.console = None
        if progress:
            from rich.console import Console

            self.console = Console()
        self._mlflow = None
        if os.environ.get("MLFLOW_TRACKING_URI"):
            self._start_mlflow(params or {}, run_name)

    def _start_mlflow(self, params: dict[str, Any], run_name: str) -> None:
        import mlflow

        id_file = self.run_dir / MLFLOW_RUN_FILE
        if id_file.is_file():
            mlflow.start_run(run_id=id_file.read_text().strip())
        else:
            run = mlflow.start_run(run_name=run_name)
            id_file.write_text(run.info.run_id)
            flat = {k: str(v)[:500] for k, v in params.items()}
            for i in range(0, len(flat), 100):
                mlflow.log_params(dict(list(flat.items())[i:i + 100]))
        self._mlflow = mlflow

    def progress(self, step: int, total: int):
        """A callback printing rejection-sampling progress of RL step ``step`` (None without console)."""
        if self.console is None:
            return None
        console = self.console
        return lambda message: console.print(f"  step {step}/{total}: {message}", highlight=False)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **clean}) + "\n")
        if self._mlflow is not None:
            self._mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in clean.items()}, step=step)
        if self.console is not None:
            shown = [f"{k.split('/')[-1]}={clean[k]:.4g}" for k in CONSOLE_KEYS if k in clean]
            shown += [f"{k}={v:.4g}" for k, v in clean.items() if k.startswith("val/") and "avg@" in k]
            self.console.print(f"[bold]step {step}[/bold] " + " ".join(shown))

    def close(self) -> None:
        if self._mlflow is not None:
            self._mlflow.end_run()
            self._mlflow = None
