"""MLflow tracking for pipeline runs: one parent run per KFP run (tagged ``kfp.run_id``), one child
run per stage with its params (secrets dropped), metrics and report artifacts.

Every call names its tracking URI (``MlflowClient(tracking_uri=...)``, no global MLflow state),
so several stages can run in one process. Tracking is off when the URI resolves to None: then
``start_pipeline_run`` returns None and ``stage_run`` yields a tracker whose methods do nothing.

Local default store: ``file://<run_dir>/mlruns``. mlflow-skinny 3.17 has no database backend
without SQLAlchemy (not in skinny) and its file store refuses to start unless
``MLFLOW_ALLOW_FILE_STORE=true``; for ``file://`` URIs we set that opt-in (if unset). Point
``MLFLOW_TRACKING_URI`` at an MLflow server in a cluster (the pipelines' tasks get it from the chart's
platform ConfigMap).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mini_o3 import __version__
from mini_o3.interrupts import sigterm_raises
from mini_o3.redact import redact_text

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

#: Param keys containing one of these (case-insensitive) are never logged. ``tokens`` (plural:
#: ``max_tokens``, ``max_new_tokens``) is a count, not a secret, and is kept.
SECRET_PATTERNS = re.compile(r"key|token(?!s)|secret|passw(or)?d|credential|auth", re.IGNORECASE)
MAX_PARAM_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_KEY = 250  # MAX_ENTITY_KEY_LENGTH
MAX_TAG_VALUE = 8000
_BATCH_PARAMS = 100
_BATCH_METRICS = 1000
_OFF = {"", "none", "off", "false", "disabled"}
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")
#: KFP task / pipeline states → MLflow run status.
_STATUS = {"SUCCEEDED": "FINISHED", "FINISHED": "FINISHED", "FAILED": "FAILED", "SYSTEM_ERROR": "FAILED",
           "CANCELED": "KILLED", "CANCELLED": "KILLED", "KILLED": "KILLED"}

TAG_KFP_RUN = "kfp.run_id"
TAG_KFP_PIPELINE = "kfp.pipeline"
TAG_VERSION = "mini_o3.version"
TAG_KIND = "mini_o3.run_kind"  # "pipeline" | "stage"
TAG_STAGE = "mini_o3.stage"
TAG_PARENT = "mlflow.parentRunId"


# -- params ---------------------------------------------------------------------------------------
def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def clean_key(key: str) -> str:
    """A key MLflow accepts: ``[/\\w.- ]`` only, no empty / ``..`` path segments, ≤ 250 chars."""
    key = _BAD_KEY_CHARS.sub("_", key.replace("@", "_at_"))
    parts = [p for p in key.split("/") if p not in ("", ".", "..")]
    return "/".join(parts)[:MAX_KEY] or "_"


def is_secret(key: str) -> bool:
    return bool(SECRET_PATTERNS.search(key))


def redact(params: Mapping[str, Any]) -> dict[str, str]:
    """Params as MLflow takes them: nested mappings / pydantic models flattened to dotted keys,
    keys matching ``SECRET_PATTERNS`` dropped, values through ``mini_o3.redact.redact_text`` (URL
    passwords, ``Bearer`` credentials, ``api_key=...`` items of override lists masked), ``str`` cut
    to MLflow's 6000-character limit."""
    flat: dict[str, Any] = {}
    _flatten(params, "", flat)
    out: dict[str, str] = {}
    for key, value in flat.items():
        if is_secret(key):
            continue
        text = value if isinstance(value, str) else str(value)
        out[clean_key(key)] = redact_text(_URL_USERINFO.sub(r"\g<scheme>***@", text))[:MAX_PARAM_VALUE]
    return out


# -- tracking URIs --------------------------------------------------------------------------------
def default_tracking_uri(run_dir: Path) -> str:
    """``file://<run_dir>/mlruns`` (absolute)."""
    return (Path(run_dir).expanduser().resolve() / "mlruns").as_uri()


def resolve_tracking_uri(explicit: str | None, run_dir: Path | None) -> str | None:
    """``explicit`` ("" / "none" → tracking off), else ``$MLFLOW_TRACKING_URI``, else the local
    store under ``run_dir``, else None (off). A plain path becomes a ``file://`` URI."""
    for candidate in (explicit, os.environ.get("MLFLOW_TRACKING_URI")):
        if candidate is None:
            continue
        if candidate.strip().lower() in _OFF:
            return None
        candidate = candidate.strip()
        return candidate if "://" in candidate else Path(candidate).expanduser().resolve().as_uri()
    return default_tracking_uri(run_dir) if run_dir is not None else None


def client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient for ``tracking_uri`` (opting in to the file store for ``file://``)."""
    from mlflow import MlflowClient

    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=tracking_uri)


# -- runs -----------------------------------------------------------------------------------------
def _experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name)
    except MlflowException:  # created concurrently by another task
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_pipeline_run(mlflow_client: MlflowClient, experiment_id: str, kfp_run_id: str) -> str | None:
    quoted = kfp_run_id.replace("'", "\\'")
    runs = mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_KFP_RUN}` = '{quoted}' and tags.`{TAG_KIND}` = 'pipeline'",
        max_results=1, order_by=["attributes.start_time ASC"])
    return runs[0].info.run_id if runs else None


def start_pipeline_run(*, experiment: str, kfp_run_id: str, pipeline: str, params: Mapping[str, Any],
                       tracking_uri: str | None) -> str | None:
    """The parent run of KFP run ``kfp_run_id`` (created once; a retried task gets the same run),
    or None when tracking is off."""
    if tracking_uri is None:
        return None
    if not kfp_run_id or not kfp_run_id.strip():
        raise ValueError("start_pipeline_run: kfp_run_id is empty (pass the KFP run id, dsl.PIPELINE_JOB_ID_PLACEHOLDER)")
    if not experiment or not experiment.strip():
        raise ValueError("start_pipeline_run: experiment name is empty")
    mlflow_client = client(tracking_uri)
    experiment_id = _experiment_id(mlflow_client, experiment)
    existing = find_pipeline_run(mlflow_client, experiment_id, kfp_run_id)
    if existing is not None:
        return existing
    run = mlflow_client.create_run(experiment_id, run_name=f"{pipeline}-{kfp_run_id[:8]}", tags={
        TAG_KFP_RUN: kfp_run_id, TAG_KFP_PIPELINE: pipeline, TAG_VERSION: __version__, TAG_KIND: "pipeline"})
    StageTracker(mlflow_client, run.info.run_id).log_params(params)
    return run.info.run_id


def finish_pipeline_run(parent_run_id: str | None, *, status: str = "FINISHED", tracking_uri: str | None) -> None:
    """End the parent run; ``status`` is an MLflow status or a KFP state (SUCCEEDED, FAILED, CANCELED…)."""
    if parent_run_id is None or tracking_uri is None:
        return
    mlflow_status = _STATUS.get(status.strip().upper())
    if mlflow_status is None:
        raise ValueError(f"finish_pipeline_run: unknown status {status!r}; expected one of {sorted(_STATUS)}")
    client(tracking_uri).set_terminated(parent_run_id, status=mlflow_status)


def kill_open_runs(*, experiment: str, tracking_uri: str | None, run_roots_under: str,
                   skip_run_roots: Collection[str] = ()) -> list[str]:
    """Mark KILLED the pipeline runs of ``experiment`` still RUNNING whose ``run_root`` param is a
    folder directly under ``run_roots_under`` (minus ``skip_run_roots``' names: runs that were there
    before), and their stage runs still RUNNING: what an interrupted embedded run leaves, since its
    exit handler (``finish-run``) never runs. Returns the parent run ids closed."""
    if tracking_uri is None:
        return []
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    running = mlflow_client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                        max_results=1000)
    under = Path(run_roots_under).resolve()
    parents = [r.info.run_id for r in running if r.data.tags.get(TAG_KIND) == "pipeline"
               and (root := r.data.params.get("run_root")) and Path(root).parent.resolve() == under
               and Path(root).name not in set(skip_run_roots)]
    for run in running:
        if run.data.tags.get(TAG_PARENT) in parents:
            mlflow_client.set_terminated(run.info.run_id, status="KILLED")
    for run_id in parents:
        finish_pipeline_run(run_id, status="KILLED", tracking_uri=tracking_uri)
    return parents


class StageTracker:
    """Logs into one MLflow run (``run_id`` None: does nothing). Logging is best effort: a failing
    call is logged as a warning and the stage goes on (a dead tracking server must not kill a
    long training run)."""

    def __init__(self, mlflow_client: MlflowClient | None, run_id: str | None) -> None:
        self._client, self.run_id = mlflow_client, run_id

    def _call(self, what: str, fn: Callable[[MlflowClient, str], Any]) -> None:
        if self._client is None or self.run_id is None:
            return
        try:
            fn(self._client, self.run_id)
        except Exception as exc:  # noqa: BLE001 - best effort, reported
            log.warning("MLflow %s failed for run %s: %s", what, self.run_id, exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params through ``redact`` (secrets dropped), 100 per request."""
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in redact(params).items()]
        for i in range(0, len(items), _BATCH_PARAMS):
            batch = items[i:i + _BATCH_PARAMS]
            self._call("log_params", lambda c, r, b=batch: c.log_batch(r, params=b))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric values only (numpy / torch scalars too); keys made MLflow-safe (``@`` → ``_at_``)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(clean_key(k), float(v), now, step or 0) for k, v in metrics.items() if _is_number(v)]
        for i in range(0, len(items), _BATCH_METRICS):
            batch = items[i:i + _BATCH_METRICS]
            self._call("log_metrics", lambda c, r, b=batch: c.log_batch(r, metrics=b))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(clean_key(k), redact_text(str(v))[:MAX_TAG_VALUE]) for k, v in tags.items() if not is_secret(k)]
        for i in range(0, len(items), _BATCH_PARAMS):
            batch = items[i:i + _BATCH_PARAMS]
            self._call("set_tags", lambda c, r, b=batch: c.log_batch(r, tags=b))

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self._call("log_artifact", lambda c, r: c.log_artifact(r, str(path), artifact_path))

    def log_artifacts(self, directory: Path | str, artifact_path: str | None = None) -> None:
        self._call("log_artifacts", lambda c, r: c.log_artifacts(r, str(directory), artifact_path))


def _is_number(value: Any) -> bool:
    """Numbers MLflow can store (numpy / torch scalars included); bools and strings are not."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not hasattr(value, "__len__")


@contextmanager
def stage_run(*, parent_run_id: str | None, stage: str, params: Mapping[str, Any] | None = None,
              tracking_uri: str | None) -> Iterator[StageTracker]:
    """A child run of ``parent_run_id`` named ``stage``: FINISHED on success, FAILED on an
    exception (KILLED on KeyboardInterrupt / SystemExit, and on SIGTERM, which raises inside the
    block: ``mini_o3.interrupts``), then the exception goes on. With no parent (tracking off) the
    tracker does nothing."""
    if parent_run_id is None or tracking_uri is None:
        yield StageTracker(None, None)
        return
    mlflow_client = client(tracking_uri)
    parent = mlflow_client.get_run(parent_run_id)
    tags = {TAG_PARENT: parent_run_id, TAG_STAGE: stage, TAG_KIND: "stage", TAG_VERSION: __version__}
    for key in (TAG_KFP_RUN, TAG_KFP_PIPELINE):
        if key in parent.data.tags:
            tags[key] = parent.data.tags[key]
    run = mlflow_client.create_run(parent.info.experiment_id, run_name=stage, tags=tags)
    tracker = StageTracker(mlflow_client, run.info.run_id)
    tracker.log_params(params or {})
    try:
        with sigterm_raises():
            yield tracker
    except Exception as exc:
        tracker.set_tags({"mini_o3.error": f"{type(exc).__name__}: {exc}"})
        mlflow_client.set_terminated(run.info.run_id, status="FAILED")
        raise
    except BaseException:
        mlflow_client.set_terminated(run.info.run_id, status="KILLED")
        raise
    mlflow_client.set_terminated(run.info.run_id, status="FINISHED")
