"""Cluster commands through ``kfp.Client``: upload-or-reuse the compiled pipelines (a version per
content hash), submit runs into an experiment, and create or update recurring evaluation runs.

A pipeline is found by name (``mini-o3-train`` / ``mini-o3-evaluate``) **in the namespace it is
uploaded to** (the KFP 2.17 API server keeps pipelines unique per (name, namespace) and lists one
namespace at a time; ``kfp.Client.get_pipeline_id`` lists only shared pipelines, so in multi-user
Kubeflow it never finds a namespaced one and a second upload fails with 409); its versions are
named ``v<package version>-<12 hex of sha256(compiled YAML)>``, so an unchanged package reuses its
version and any change (a recompile with other images included) adds a new one.

Recurring runs are not unique on the server (any number may share a name), so ``schedule`` is a
create-or-update: it keeps an identical one, else creates the new one and then deletes the older
ones of the same name and pipeline, so re-running it (``helm upgrade``) never adds a second nightly run.

In multi-user Kubeflow the API server wants a service-account token: ``connect`` passes
``ServiceAccountTokenVolumeCredentials`` whenever a token file is present (the SDK itself uses it
only when no host is given and it runs in a cluster).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from mini_o3 import __version__

from .compile import PIPELINE_FILES
from .cron import next_fire_times, to_kfp_cron

PIPELINE_NAMES = {"train": "mini-o3-train", "evaluate": "mini-o3-evaluate"}
#: KFP parameter types → Python types accepted for them.
_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,), "NUMBER_INTEGER": (int,), "NUMBER_DOUBLE": (int, float), "BOOLEAN": (bool,),
    "LIST": (list,), "STRUCT": (dict,),
}
#: What ``kfp.client`` reads for the projected token: env name and default path (kfp 2.17.3
#: ``kfp/client/__init__.py``: KF_PIPELINES_SA_TOKEN_ENV / KF_PIPELINES_SA_TOKEN_PATH).
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
DEFAULT_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
TIMEZONE_NOTE = ("fire times are in the KFP scheduler's timezone (CRON_SCHEDULE_TIMEZONE of the "
                 "ml-pipeline-scheduledworkflow controller; default: its local time, usually UTC)")


class ClientError(RuntimeError):
    """A cluster command's input or a KFP API call failed; the message says which."""


@dataclass(frozen=True)
class Uploaded:
    """A pipeline and the version of the compiled package on the server."""

    name: str
    pipeline_id: str
    version_id: str
    version_name: str
    created_pipeline: bool
    created_version: bool


def package_path(pipeline: str, root: Path | str = ".") -> Path:
    """The compiled package of ``pipeline`` (train | evaluate) under ``root``."""
    if pipeline not in PIPELINE_FILES:
        raise ClientError(f"unknown pipeline {pipeline!r}; expected one of {', '.join(PIPELINE_FILES)}")
    path = Path(root) / PIPELINE_FILES[pipeline]
    if not path.is_file():
        raise ClientError(f"compiled pipeline {path} not found; run `mini-o3 compile` first")
    return path


def version_name(path: Path) -> str:
    """``v<version>-<12 hex of the package's sha256>``."""
    return f"v{__version__}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def pipeline_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """Root input parameters of a compiled package: name → {parameterType, defaultValue, ...}."""
    spec = next(yaml.safe_load_all(path.read_text()))
    return spec["root"]["inputDefinitions"]["parameters"]


def resolve_params(path: Path, raw: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings → typed pipeline arguments. Values are read as YAML; a key may omit the
    phase prefix (``sft_model_uri`` for ``p2_sft_model_uri``); unknown keys and wrong types fail."""
    from mini_o3.overrides import parse_value

    known = pipeline_parameters(path)
    out: dict[str, Any] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ClientError(f"parameter {item!r} must look like key=value")
        name = key if key in known else next((n for n in known if n.split("_", 1)[-1] == key and n[0] == "p"), None)
        if name is None:
            raise ClientError(f"unknown parameter {key!r} of {path.name}; known: {', '.join(sorted(known))}")
        kind = known[name]["parameterType"]
        parsed = value if kind == "STRING" else parse_value(value)
        if isinstance(parsed, bool) and kind != "BOOLEAN" or not isinstance(parsed, _TYPES[kind]):
            raise ClientError(f"parameter {name}={value!r}: expected {kind.lower().replace('_', ' ')}")
        out[name] = parsed
    return out


def token_path(environ: dict[str, str] | None = None) -> str | None:
    """The service-account token file to authenticate with: ``$KF_PIPELINES_SA_TOKEN_PATH`` (which
    must exist when set), else the projected default path when it exists, else None."""
    environ = os.environ if environ is None else environ
    configured = environ.get(TOKEN_PATH_ENV)
    if configured:
        if not os.path.isfile(configured):
            raise ClientError(f"{TOKEN_PATH_ENV}={configured} is not a file: mount the projected service-account "
                              "token there (audience pipelines.kubeflow.org) or unset it")
        return configured
    return DEFAULT_TOKEN_PATH if os.path.isfile(DEFAULT_TOKEN_PATH) else None


def connect(host: str, namespace: str | None = None, **kwargs: Any) -> Any:
    """``kfp.Client`` for ``host`` (and ``namespace`` in multi-user deployments), authenticated with
    the service-account token of :func:`token_path` when there is one: with an explicit host,
    ``kfp.Client`` sends no credentials of its own (kfp 2.17.3 client.py ``_load_config``: the
    ``credentials`` branch sets the bearer hook, and ``if host: return config`` comes before the
    in-cluster default credentials)."""
    import warnings

    import kfp

    if not host:
        raise ClientError("--host is empty: give the KFP API URL, e.g. http://localhost:8080 (kubectl port-forward)")
    path = token_path()
    if path and not kwargs.get("existing_token") and not kwargs.get("credentials"):
        from kfp.client import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=path)
    with warnings.catch_warnings():  # "only works with KFP >= 2.0.0-beta.2": we pin the SDK to the backend
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp.client")
        return kfp.Client(host=host, namespace=namespace or "kubeflow", **kwargs)


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": name}]})


def find_pipeline(client: Any, name: str, namespace: str | None = None) -> str | None:
    """The id of pipeline ``name`` in ``namespace`` (None: the shared / single-user namespace), or None."""
    found, token = [], ""
    while True:
        page = client.list_pipelines(filter=_name_filter(name), namespace=namespace, page_token=token, page_size=100)
        found += [p for p in page.pipelines or [] if p.display_name == name]
        token = page.next_page_token or ""
        if not token:
            break
    if len(found) > 1:
        raise ClientError(f"{len(found)} pipelines named {name!r} in namespace {namespace or '(shared)'}; "
                          "delete all but one")
    return found[0].pipeline_id if found else None


def upload(client: Any, pipeline: str, root: Path | str = ".", namespace: str | None = None) -> Uploaded:
    """Upload the compiled ``pipeline`` or reuse it: pipeline by name, version by content hash."""
    name, path = PIPELINE_NAMES[pipeline], package_path(pipeline, root)
    version = version_name(path)
    pipeline_id = find_pipeline(client, name, namespace)
    created_pipeline = pipeline_id is None
    if created_pipeline:
        description = _description(path)
        try:
            made = client.upload_pipeline(str(path), pipeline_name=name, description=description, namespace=namespace)
        except Exception as exc:  # kfp_server_api.ApiException; 409: created meanwhile
            pipeline_id = find_pipeline(client, name, namespace) if getattr(exc, "status", None) == 409 else None
            if pipeline_id is None:
                raise
            created_pipeline = False
        else:
            pipeline_id = made.pipeline_id
    for existing in _versions(client, pipeline_id):
        if existing.display_name == version:
            return Uploaded(name, pipeline_id, existing.pipeline_version_id, version, created_pipeline, False)
    made = client.upload_pipeline_version(str(path), pipeline_version_name=version, pipeline_id=pipeline_id,
                                          description=f"mini-o3 {__version__}, package sha256 {version.rsplit('-', 1)[-1]}")
    return Uploaded(name, pipeline_id, made.pipeline_version_id, version, created_pipeline, True)


def _versions(client: Any, pipeline_id: str) -> list[Any]:
    versions, token = [], ""
    while True:
        page = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100)
        versions += page.pipeline_versions or []
        token = page.next_page_token or ""
        if not token:
            return versions


def _description(path: Path) -> str:
    spec = next(yaml.safe_load_all(path.read_text()))
    return spec.get("pipelineInfo", {}).get("description", "")[:1000]


def experiment_id(client: Any, name: str, namespace: str | None = None) -> str:
    """Get or create the experiment ``name``."""
    return client.create_experiment(name=name, namespace=namespace).experiment_id


def submit(client: Any, pipeline: str, params: dict[str, Any], *, experiment: str, run_name: str | None = None,
           root: Path | str = ".", namespace: str | None = None) -> tuple[Uploaded, Any]:
    """Upload or reuse the pipeline version, then start a run of it in ``experiment``."""
    uploaded = upload(client, pipeline, root, namespace)
    exp = experiment_id(client, experiment, namespace)
    name = run_name or f"{uploaded.name}-{datetime.now():%Y%m%d-%H%M%S}"
    run = client.run_pipeline(experiment_id=exp, job_name=name, params=params, pipeline_id=uploaded.pipeline_id,
                              version_id=uploaded.version_id)
    return uploaded, run


def plan_schedule(cron: str, n: int = 3, start: datetime | None = None) -> tuple[str, list[datetime]]:
    """(KFP's 6-field form, the next ``n`` fire times) of a cron expression."""
    kfp_cron = to_kfp_cron(cron)
    return kfp_cron, next_fire_times(kfp_cron, n, start)


def recurring_runs_named(client: Any, name: str, experiment: str) -> list[Any]:
    """Every recurring run called ``name`` in experiment ``experiment`` (the server allows many)."""
    found, token = [], ""
    while True:
        page = client.list_recurring_runs(experiment_id=experiment, filter=_name_filter(name), page_token=token,
                                          page_size=100)
        found += [r for r in page.recurring_runs or [] if r.display_name == name]
        token = page.next_page_token or ""
        if not token:
            return found


def _same(run: Any, uploaded: Uploaded, kfp_cron: str, params: dict[str, Any], max_concurrency: int) -> bool:
    """Whether recurring run ``run`` already is the one ``schedule`` would create."""
    ref = run.pipeline_version_reference
    cron = getattr(getattr(run.trigger, "cron_schedule", None), "cron", None) if run.trigger else None
    given = (run.runtime_config.parameters or {}) if run.runtime_config else {}
    return (bool(ref) and ref.pipeline_version_id == uploaded.version_id and cron == kfp_cron
            and given == params and str(run.max_concurrency) == str(max_concurrency)
            and str(run.status).upper().endswith("ENABLED") and not str(run.status).upper().endswith("DISABLED"))


def schedule(client: Any, params: dict[str, Any], *, cron: str, name: str, experiment: str,
             max_concurrency: int = 1, root: Path | str = ".", namespace: str | None = None,
             confirm: Callable[[str, list[datetime]], bool] = lambda c, t: True) -> tuple[Uploaded, Any] | None:
    """Create or update the recurring run ``name`` of ``mini-o3-evaluate``: shows the plan through
    ``confirm`` (False: nothing changes), uploads or reuses the pipeline version, keeps an enabled
    run of that name with the same version, cron, parameters and concurrency, else creates the new
    one (no catch-up, caching off: every firing evaluates anew) and then deletes the older runs of
    that name of this pipeline. A run of that name of another pipeline is refused, untouched."""
    kfp_cron, times = plan_schedule(cron)
    if not confirm(kfp_cron, times):
        return None
    uploaded = upload(client, "evaluate", root, namespace)
    exp = experiment_id(client, experiment, namespace)
    existing = recurring_runs_named(client, name, exp)
    foreign = [r for r in existing if (r.pipeline_version_reference is None
                                       or r.pipeline_version_reference.pipeline_id != uploaded.pipeline_id)]
    if foreign:
        raise ClientError(f"recurring run {name!r} in experiment {experiment!r} already exists for another pipeline "
                          f"({foreign[0].recurring_run_id}); choose another --name")
    keep = next((r for r in existing if _same(r, uploaded, kfp_cron, params, max_concurrency)), None)
    if keep is None:
        keep = client.create_recurring_run(
            experiment_id=exp, job_name=name,
            description=f"mini-o3-evaluate on cron '{kfp_cron}' ({json.dumps(params)})"[:1000],
            cron_expression=kfp_cron, max_concurrency=max_concurrency, no_catchup=True, params=params,
            pipeline_id=uploaded.pipeline_id, version_id=uploaded.version_id, enable_caching=False)
    for old in existing:
        if old.recurring_run_id != keep.recurring_run_id:
            client.delete_recurring_run(old.recurring_run_id)
    return uploaded, keep
