"""MLflow Model Registry: the train pipeline registers its sealed models as versions of a named
model (default ``mini-o3``) and moves an alias (default ``candidate``) to the new version; the
evaluate pipeline, the chart's schedule and ``mini-o3 eval`` follow ``models:/NAME@ALIAS`` or
``models:/NAME/VERSION``, resolved when they run.

A version's ``source`` is the sealed artifact URI; its digest (``artifact_digest``: sha256 over the
completion marker's file list, so it is read without downloading the weights) is stored in the
version tag ``mini_o3.digest``. The registry needs an MLflow server (``http://…``, backed by a
database) or a local ``file://`` store (MLflow's file registry; ``tracking.client`` opts in to it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mini_o3 import tracking
from mini_o3.redact import redact_text

DEFAULT_ALIAS = "candidate"
CHAMPION = "champion"
TAG_DIGEST = "mini_o3.digest"
TAG_SOURCE = "mini_o3.source"
#: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (MLflow's own forms).
_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[0-9]+))$")
#: MLflow's alias rule: letters, digits, ``_`` and ``-``; ``latest`` and ``vN`` are reserved.
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


class RegistryError(ValueError):
    """A registry reference or call failed; the message names the reference."""


@dataclass(frozen=True)
class ResolvedModel:
    """What a model reference pointed at when it was resolved."""

    ref: str  # as given: models:/mini-o3@candidate, s3://…, hf://…
    uri: str  # the sealed artifact (or hub id) evaluated
    digest: str  # artifact_digest of ``uri`` ("" for a hub id: not ours to hash)
    name: str = ""  # registered model name ("" when ``ref`` is no registry reference)
    version: str = ""
    alias: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def label(self) -> str:
        """``mini-o3 v3 (@candidate)`` for a registry reference, else the URI."""
        if not self.name:
            return self.uri
        return f"{self.name} v{self.version}" + (f" (@{self.alias})" if self.alias else "")


def is_registry_ref(ref: str) -> bool:
    return ref.strip().startswith("models:/")


def parse_ref(ref: str) -> tuple[str, str, str]:
    """(name, alias, version) of ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` (one of alias,
    version is "")."""
    match = _REF.match(ref.strip())
    if not match:
        raise RegistryError(f"model reference {ref!r} is malformed; expected models:/NAME@ALIAS or models:/NAME/VERSION")
    return match["name"], match["alias"] or "", match["version"] or ""


def check_alias(alias: str, what: str = "alias") -> str:
    if not _ALIAS.match(alias or "") or alias.lower() == "latest" or re.fullmatch(r"[vV][0-9]+", alias):
        raise RegistryError(f"{what} {alias!r} is not a valid MLflow alias (letters, digits, _ and -; "
                            "not 'latest' or vN)")
    return alias


def artifact_digest(uri: str) -> str:
    """16 hex digits over the sealed artifact's file list (relative path, size, sha256 of each):
    equal digests mean equal contents. Reads only the completion marker."""
    from mini_o3 import storage

    manifest = storage.read_manifest(uri)
    lines = "\n".join(f"{r['path']}\0{r['size']}\0{r['sha256']}" for r in manifest.files)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def _client(tracking_uri: str | None) -> Any:
    if not tracking_uri:
        raise RegistryError("the MLflow Model Registry needs a tracking URI (--tracking-uri / "
                            "MLFLOW_TRACKING_URI, in a pipeline from the platform ConfigMap), and none is set")
    return tracking.client(tracking_uri)


def _mlflow_error() -> type[BaseException]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def register_version(*, tracking_uri: str, name: str, source_uri: str, tags: Mapping[str, Any] | None = None,
                     alias: str = DEFAULT_ALIAS, description: str = "") -> ResolvedModel:
    """A new version of ``name`` (created when missing) pointing at the sealed ``source_uri``,
    tagged with ``tags`` and its digest; ``alias`` (if any) moves to it."""
    if not name or not name.strip():
        raise RegistryError("registered model name is empty")
    if alias:
        check_alias(alias)
    client = _client(tracking_uri)
    digest = artifact_digest(source_uri)
    try:
        try:
            client.get_registered_model(name)
        except _mlflow_error():
            client.create_registered_model(name, description="Mini-o3 policies registered by mini-o3-train")
        clean = {tracking.clean_key(k): redact_text(str(v))[: tracking.MAX_TAG_VALUE]
                 for k, v in (tags or {}).items() if not tracking.is_secret(k)}
        clean.update({TAG_DIGEST: digest, TAG_SOURCE: source_uri})
        made = client.create_model_version(name, source=source_uri, tags=clean, description=description or None)
        if alias:
            client.set_registered_model_alias(name, alias, made.version)
    except _mlflow_error() as exc:
        raise RegistryError(f"registering {source_uri!r} as a version of {name!r}: {exc}") from exc
    return ResolvedModel(f"models:/{name}/{made.version}", source_uri, digest, name, str(made.version), alias)


def get_version(tracking_uri: str, name: str, *, alias: str = "", version: str = "") -> Any:
    """The ``ModelVersion`` an alias or number names; RegistryError naming it when there is none."""
    client = _client(tracking_uri)
    what = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    try:
        return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except _mlflow_error() as exc:
        raise RegistryError(f"{what} does not resolve in the registry at {redact_text(tracking_uri)}: "
                            f"{str(exc).splitlines()[0]}") from exc


def resolve(ref: str, tracking_uri: str | None) -> ResolvedModel:
    """What ``ref`` names now: a registry reference is looked up (its source and digest); a sealed
    artifact URI is itself with its digest; a hub id is itself without one."""
    from mini_o3.stages.common import is_hub_model

    ref = (ref or "").strip()
    if not ref:
        raise RegistryError("model reference is empty: give models:/NAME@ALIAS, models:/NAME/VERSION, a sealed URI or hf://org/name")
    if not is_registry_ref(ref):
        return ResolvedModel(ref, ref, "" if is_hub_model(ref) else artifact_digest(ref))
    name, alias, version = parse_ref(ref)
    found = get_version(tracking_uri or "", name, alias=alias, version=version)
    source = found.tags.get(TAG_SOURCE) or found.source
    digest = found.tags.get(TAG_DIGEST) or artifact_digest(source)
    return ResolvedModel(ref, source, digest, name, str(found.version), alias)


def set_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    check_alias(alias)
    try:
        _client(tracking_uri).set_registered_model_alias(name, alias, version)
    except _mlflow_error() as exc:
        raise RegistryError(f"setting alias {alias!r} of {name!r} to version {version}: {exc}") from exc


def set_version_tags(tracking_uri: str, name: str, version: str, tags: Mapping[str, Any]) -> None:
    client = _client(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, tracking.clean_key(key), str(value)[: tracking.MAX_TAG_VALUE])


def alias_version(tracking_uri: str, name: str, alias: str) -> str:
    """The version number ``alias`` points at, "" when it points nowhere (or the model is missing)."""
    try:
        return str(_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except _mlflow_error():
        return ""


def local_model(resolved: ResolvedModel) -> str:
    """A local folder (or the hub id) of a resolved model: a sealed artifact is verified and, when
    remote, downloaded to the artifact cache."""
    from mini_o3 import storage

    if not resolved.digest:
        return resolved.uri
    return str(storage.get_dir(resolved.uri, progress=True))


def resolve_policy(spec: str, tracking_uri: str | None) -> tuple[str, ResolvedModel | None]:
    """``local:models:/NAME@ALIAS`` / ``vllm:models:/NAME/VERSION`` → (the spec on the resolved
    model's local folder, what it resolved to); any other spec is returned as it is, with None."""
    kind, sep, target = spec.partition(":")
    if not sep or kind not in ("local", "vllm") or not is_registry_ref(target):
        return spec, None
    resolved = resolve(target, tracking_uri)
    return f"{kind}:{local_model(resolved)}", resolved
