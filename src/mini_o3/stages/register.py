"""Register stage: the train pipeline's final RL model (and optionally its SFT model, as
``<name>-sft``) becomes a new version of a registered model in the MLflow Model Registry, pointing
at the sealed artifact, tagged with the run, the digests of its data and the hashes of its
training configs, with an alias (default ``candidate``) moved to it. The sealed output holds only
``stage.json`` (the versions made), so a pipeline run shows what it registered.
"""

from __future__ import annotations

from collections.abc import Mapping

from mini_o3 import storage
from mini_o3.registry import RegistryError, artifact_digest, register_version

from .common import (
    StageError,
    StageResult,
    Tracking,
    is_hub_model,
    seal,
    stage_tracker,
    work_dir,
    write_result,
)

#: The file of a stage's sealed ``run/`` folder whose sha256 is that stage's config hash.
CONFIG_FILES = {"rl": "rl_config.json", "sft": "llamafactory_sft.yaml"}


def _digest(uri: str) -> str:
    if not uri or is_hub_model(uri):
        return ""
    try:
        return artifact_digest(uri)
    except (storage.StorageError, OSError, ValueError):
        return ""


def config_hash(model_uri: str, stage: str) -> str:
    """sha256 (16 hex) of the training config in the ``run/`` sibling of ``model_uri``, from its
    completion marker ("" when there is none: a model given by URI)."""
    if not model_uri.rstrip("/").endswith("/model"):
        return ""
    run = model_uri.rstrip("/")[: -len("model")] + "run"
    try:
        record = storage.read_manifest(run).by_path().get(CONFIG_FILES[stage])
    except storage.StorageError:
        return ""
    return record["sha256"][:16] if record else ""


def version_tags(*, kfp_run_id: str, parent_run_id: str, data_uris: Mapping[str, str], model_uri: str, stage: str,
                 eval_uri: str = "") -> dict[str, str]:
    tags = {"mini_o3.kfp_run_id": kfp_run_id, "mini_o3.mlflow_parent_run": parent_run_id,
            "mini_o3.stage": stage, f"mini_o3.config.{stage}": config_hash(model_uri, stage),
            "mini_o3.train_eval_uri": eval_uri}
    for name, uri in data_uris.items():
        tags[f"mini_o3.data.{name}"] = _digest(uri)
        tags[f"mini_o3.data.{name}.uri"] = uri
    return {k: v for k, v in tags.items() if v}


def register_stage(model_uri: str, out_uri: str, *, name: str, alias: str = "candidate", sft_model_uri: str = "",
                   data_uris: Mapping[str, str] | None = None, eval_uri: str = "", kfp_run_id: str = "",
                   tracking: Tracking = Tracking(), registry_uri: str | None = None) -> StageResult:
    """Register ``model_uri`` (and ``sft_model_uri`` as ``<name>-sft``) in the registry at
    ``registry_uri`` (default: the tracking URI); no registry → a warning and nothing registered."""
    registry_uri = registry_uri or tracking.tracking_uri
    versions: dict[str, dict[str, str]] = {}
    params = {"model_uri": model_uri, "sft_model_uri": sft_model_uri, "name": name, "alias": alias}
    with work_dir("register") as wd, stage_tracker("register", tracking, params) as tracker:
        if not name:
            print("[mini-o3] register: no model name given, nothing registered", flush=True)
        elif not registry_uri:
            print(f"[mini-o3] WARNING register: no MLflow tracking URI, {model_uri} is not registered as {name}",
                  flush=True)
        else:
            for stage, uri, model_name in (("rl", model_uri, name), ("sft", sft_model_uri, f"{name}-sft")):
                if not uri:
                    continue
                tags = version_tags(kfp_run_id=kfp_run_id, parent_run_id=tracking.parent_run_id or "",
                                    data_uris=data_uris or {}, model_uri=uri, stage=stage, eval_uri=eval_uri)
                try:
                    made = register_version(tracking_uri=registry_uri, name=model_name, source_uri=uri, tags=tags,
                                            alias=alias, description=f"{stage} model of run {kfp_run_id}")
                except RegistryError as exc:
                    raise StageError(str(exc)) from exc
                versions[stage] = made.to_dict()
                print(f"[mini-o3] registered {uri} as {made.label} ({made.ref}; digest {made.digest})", flush=True)
        if "rl" in versions:
            tracker.set_tags({"mini_o3.registered_model": versions["rl"]["ref"]})
        result = StageResult("register", out_uri, model_uri=model_uri, outputs={"registered": out_uri},
                             info={"versions": versions})
        out = wd / "registered"
        out.mkdir(parents=True, exist_ok=True)
        write_result(result, out)
        seal(out, out_uri, progress=False)
    return result
