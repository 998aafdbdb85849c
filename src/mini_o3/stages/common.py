"""What every stage shares: the result type, the work folder, reading sealed inputs, sealing
outputs, model references and the MLflow child run.

Inputs are URIs (``s3://``, ``minio://``, ``file://`` or local paths) of *sealed* artifacts
(``storage.COMPLETION_MARKER`` present); an unsealed (half-written) input is refused with
``storage.IncompleteArtifactError`` before any work starts. Every input is materialised under
the work folder as ``<role>/<basename of the URI>``, because prepared datasets name their images
relative to their parent folder (``BASE_IMAGE_DIR``) and evaluation names benchmarks after their
folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mini_o3.data.sources import HUB_REPO
from mini_o3.launch.settings import WORK_DIR_ENV  # work folder root; RayJobs point it at their shared volume

#: Name of the result record inside a stage's sealed output (see ``result_uri``).
RESULT_NAME = "stage.json"
#: ``hf://org/name[@revision]`` (or a bare ``org/name`` that is no local path): a hub model.
_HUB_MODEL = re.compile(rf"^(?:hf://)?(?P<repo>{HUB_REPO})(?:@(?P<rev>[\w./-]+))?$")
#: Library processes must not open MLflow runs of their own: the stage's child run owns them.
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")

console = Console(stderr=True)


@dataclass(frozen=True)
class Tracking:
    """Where a stage logs: the pipeline's MLflow parent run (None: no tracking)."""

    parent_run_id: str | None = None
    tracking_uri: str | None = None


@dataclass
class StageResult:
    """A finished stage: its sealed output, the model it produced (if any) and small metrics."""

    stage: str
    out_uri: str
    model_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # name → URI of every sealed output
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        """The result as a KFP ``dict`` output (what a downstream task receives). KFP's struct values
        cannot hold null (kfp.local refuses them), so null entries are left out at every level: a
        missing model URI comes back as None from ``from_dict``."""
        def drop_null(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: drop_null(v) for k, v in value.items() if v is not None}
            return [drop_null(v) for v in value] if isinstance(value, list) else value

        return drop_null(json.loads(self.to_json()))

    @classmethod
    def from_json(cls, text: str) -> StageResult:
        return cls(**json.loads(text))

    @classmethod
    def from_dict(cls, value: Any, name: str = "stage result") -> StageResult:
        """A result handed on by an upstream task; ``name`` is the input it arrived as (for the error)."""
        fields = set(cls.__dataclass_fields__)
        if not isinstance(value, dict) or not {"stage", "out_uri"} <= set(value) or set(value) - fields:
            keys = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise StageError(f"{name}: expected a stage result with keys stage, out_uri[, {', '.join(sorted(fields - {'stage', 'out_uri'}))}], got {keys}")
        return cls(**value)


class StageError(RuntimeError):
    """A stage input or run failed; the message names the input."""


def result_uri(stage: str, out_uri: str) -> str:
    """Where ``stage`` leaves its ``stage.json`` (inside its last sealed output)."""
    from mini_o3 import storage

    return storage.join(out_uri, "run", RESULT_NAME) if stage in ("sft", "rl") else storage.join(out_uri, RESULT_NAME)


def read_result(stage: str, out_uri: str) -> StageResult:
    """The result a stage run (possibly remote: Ray / RayJob) left in its sealed output."""
    from mini_o3 import storage

    return StageResult.from_json(storage.get_text(result_uri(stage, out_uri)))


def given_result(uri: str, kind: str) -> StageResult:
    """What a skip branch hands on for an artifact given by URI: the result it was sealed with when it
    has one (``result_uri``: a model's ``run/stage.json`` beside ``model/``, else ``<uri>/stage.json``)
    and that names this very artifact, else a ``given`` result that holds only the URI (hub models,
    models trained elsewhere, copies)."""
    from mini_o3 import storage

    model = kind.startswith("model")
    root = uri.rstrip("/")
    record = None
    if not is_hub_model(uri):
        if not model:
            record = result_uri("data", root)
        elif root.endswith("/model"):
            record = result_uri("sft", root[: -len("/model")])  # SFT and RL seal the same layout
    if record is not None:
        try:
            result = StageResult.from_json(storage.get_text(record))
        except (storage.StorageError, ValueError, TypeError):
            result = None
        if result is not None and ((result.model_uri or "") if model else result.out_uri).rstrip("/") == root:
            return result
    return StageResult("given", uri, model_uri=uri if model else None, outputs={"model" if model else "artifact": uri},
                       info={"kind": kind})


@contextlib.contextmanager
def work_dir(stage: str, given: str | os.PathLike | None = None) -> Iterator[Path]:
    """A work folder for one stage run: ``given``, else ``$MINI_O3_WORK_DIR/<stage>``, else a
    temporary folder that is removed afterwards (kept folders let SFT / RL resume)."""
    root = given or os.environ.get(WORK_DIR_ENV)
    if root:
        path = Path(root).expanduser().resolve() / ("" if given else stage)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=f"mini-o3-{stage}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def basename(uri: str) -> str:
    """Last path segment of a URI or path (``s3://b/run/bench`` → ``bench``)."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        raise StageError(f"URI {uri!r} has no last path segment to name its folder")
    return name


def fetch(uri: str, parent: Path, *, progress: bool = True) -> Path:
    """The sealed artifact ``uri`` as a local folder named ``<basename>`` (refuses unsealed ones):
    a local artifact is verified and used in place, a remote one downloaded to ``parent/<basename>``."""
    from mini_o3 import storage

    if not storage.is_remote(uri):
        return Path(storage.get_dir(uri, progress=progress))
    dest = parent / basename(uri)
    if dest.exists():
        shutil.rmtree(dest)
    parent.mkdir(parents=True, exist_ok=True)
    return Path(storage.get_dir(uri, dest, progress=progress))


def fetch_datasets(uris: Sequence[str], parent: Path, split: str, *, progress: bool = True) -> list[Path]:
    """Dataset folders holding ``<split>.parquet`` from ``uris``: each URI is one prepared
    benchmark folder or a collection of them (``prepare_bench`` output)."""
    folders: list[Path] = []
    for i, uri in enumerate(uris):
        root = fetch(uri, parent / f"{i}", progress=progress)
        if (root / f"{split}.parquet").is_file():
            folders.append(root)
            continue
        found = sorted(p for p in root.iterdir() if p.is_dir() and (p / f"{split}.parquet").is_file())
        if not found:
            raise StageError(f"data URI {uri!r} holds no {split}.parquet (neither at its top nor in a benchmark folder)")
        folders += found
    return folders


def is_hub_model(ref: str) -> bool:
    """``hf://org/name[@rev]``, or ``org/name`` that is no URI and no existing local path."""
    if ref.startswith("hf://"):
        return bool(_HUB_MODEL.match(ref))
    return "://" not in ref and not Path(ref).expanduser().exists() and bool(_HUB_MODEL.match(ref))


def resolve_model(ref: str, parent: Path, *, progress: bool = True) -> Path:
    """A local HF model folder for ``ref``: a sealed artifact URI (downloaded, unsealed refused) or
    a hub model ``hf://org/name[@rev]`` / ``org/name`` (snapshot download, honours HF_* env)."""
    if not ref or not ref.strip():
        raise StageError("model reference is empty: give a sealed artifact URI or a hub id (hf://org/name)")
    ref = ref.strip()
    if is_hub_model(ref):
        from huggingface_hub import snapshot_download

        match = _HUB_MODEL.match(ref)
        assert match is not None
        try:
            return Path(snapshot_download(repo_id=match["repo"], revision=match["rev"]))
        except Exception as exc:  # network, auth, offline: one message naming the model
            raise StageError(f"could not download hub model {ref!r}: {type(exc).__name__}: {exc}") from exc
    model = fetch(ref, parent, progress=progress)
    if not (model / "config.json").is_file():
        raise StageError(f"model URI {ref!r} is not a Hugging Face model folder (no config.json)")
    return model


def seal(local: Path, uri: str, *, progress: bool = True) -> str:
    """Upload the folder ``local`` to ``uri`` with its completion marker last; returns ``uri``."""
    from mini_o3 import storage

    storage.put_dir(local, uri, progress=progress, overwrite=True)
    return uri


def copy_files(src: Path, dest: Path, names: Sequence[str] = (), *, skip_dirs: Sequence[str] = ()) -> Path:
    """Copy ``names`` (all entries when empty) of ``src`` into ``dest``, leaving out ``skip_dirs`` globs."""
    dest.mkdir(parents=True, exist_ok=True)
    entries = [src / n for n in names] if names else sorted(src.iterdir())
    for entry in entries:
        if not entry.exists() or any(entry.match(g) for g in skip_dirs):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, dest / entry.name)
    return dest


@contextlib.contextmanager
def library_env(extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """Run library code without the MLflow variables (the stage's child run logs instead of the
    library's own runs) and with ``extra`` variables set; restores the environment after."""
    saved = {k: os.environ.get(k) for k in (*_MLFLOW_ENV, *(extra or {}))}
    for key in _MLFLOW_ENV:
        os.environ.pop(key, None)
    os.environ.update(extra or {})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def stage_tracker(stage: str, tracking: Tracking, params: Mapping[str, Any]) -> Iterator[Any]:
    """The MLflow child run of ``stage`` under the pipeline's parent (no-op without a parent)."""
    from mini_o3 import tracking as mlflow_tracking

    clean = {k: (json.dumps(v) if isinstance(v, (list, dict, tuple)) else v) for k, v in params.items()}
    with mlflow_tracking.stage_run(parent_run_id=tracking.parent_run_id, stage=stage, params=clean,
                                   tracking_uri=tracking.tracking_uri) as tracker:
        yield tracker


def write_result(result: StageResult, folder: Path) -> Path:
    """``stage.json`` in ``folder`` (sealed with it)."""
    path = folder / RESULT_NAME
    path.write_text(json.dumps(asdict(result), indent=2, sort_keys=True) + "\n")
    return path


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite float metrics of a mapping (MLflow and KFP take numbers only)."""
    import math

    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out
