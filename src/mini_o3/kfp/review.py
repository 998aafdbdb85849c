"""The RayJob a ``mini-o3-train`` run would submit, built without a cluster (``mini-o3 rayjob-manifest``).

The compiled package (``pipelines/train.yaml``) says which pipeline parameter feeds each input of
the stage's launcher task (the ``sft`` / ``rl`` task without an accelerator: the Ray branch); the
body code then builds the request and RayJob exactly as the launcher pod does (``bodies.stage_launch``
→ ``bodies.sft_request`` / ``bodies.rl_request`` → ``dispatch.remote_stage`` → ``launch.rayjob_manifest``). Values only a run knows
are filled in by the run's storage layout: ``run_root = <p0_storage_root>/<run id>``, the data and
model URIs the earlier stages seal under it (or the ``*_uri`` parameters that skip them), no MLflow
parent run, no ownerReference (the launcher pod does not exist yet), judge credentials present, and
the platform settings (``bodies.PLATFORM_ENV``: the launcher pod's ConfigMap env) of this process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mini_o3 import storage

from .client import ClientError, package_path

STAGES = ("sft", "rl")


def _function(executor: dict[str, Any]) -> str | None:
    args = executor.get("container", {}).get("args", [])
    return args[args.index("--function_to_execute") + 1] if "--function_to_execute" in args else None


def _launcher_inputs(spec: dict[str, Any], stage: str, values: dict[str, Any]) -> dict[str, Any]:
    """The inputs of the stage's launcher task: pipeline-parameter values (through every enclosing
    DAG), constants, and ``_RUNTIME`` for what another task produces."""
    executors = spec["deploymentSpec"]["executors"]
    found: list[dict[str, Any]] = []

    def value_of(ref: dict[str, Any], env: dict[str, Any]) -> Any:
        if "componentInputParameter" in ref:
            return env.get(ref["componentInputParameter"], _RUNTIME)
        if "runtimeValue" in ref:
            return ref["runtimeValue"]["constant"]
        return _RUNTIME

    def walk(dag: dict[str, Any], env: dict[str, Any]) -> None:
        for task in dag.get("tasks", {}).values():
            component = spec["components"][task["componentRef"]["name"]]
            inputs = {k: value_of(v, env) for k, v in task.get("inputs", {}).get("parameters", {}).items()}
            if "dag" in component:
                walk(component["dag"], inputs)
                continue
            executor = executors[component["executorLabel"]]
            if _function(executor) == stage and not executor["container"].get("resources", {}).get("accelerator"):
                found.append(inputs)

    walk(spec["root"]["dag"], values)
    if len(found) != 1:
        raise ClientError(f"the train package has {len(found)} {stage} launcher tasks, expected 1; recompile it")
    return found[0]


class _Runtime:
    def __repr__(self) -> str:
        return "<run time>"


_RUNTIME = _Runtime()


def launcher_inputs(stage: str, params: dict[str, Any], *, root: Path | str = ".", run_id: str = "run-id"
                    ) -> dict[str, Any]:
    """The inputs the train pipeline gives its ``stage`` (sft | rl) launcher component in a run with the
    package's default parameters overridden by ``params`` (typed, e.g. from ``client.resolve_params``)."""
    from .client import pipeline_parameters

    if stage not in STAGES:
        raise ClientError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    path = package_path("train", root)
    known = pipeline_parameters(path)
    values = {name: p.get("defaultValue") for name, p in known.items()} | dict(params)
    spec = next(yaml.safe_load_all(path.read_text()))
    inputs = _launcher_inputs(spec, stage, values)
    mode = inputs["launch_mode"]
    if mode != "rayjob":
        raise ClientError(f"{stage} runs with launch mode {mode!r}, not as a RayJob: pass "
                          f"--param p{2 if stage == 'sft' else 3}_{stage}_launch_mode=rayjob")
    from mini_o3.stages import StageResult

    run_root = storage.join(values["p0_storage_root"], run_id)
    sft_model = values["p2_sft_model_uri"] or storage.join(run_root, "sft", "model")

    def data(given: str, name: str) -> dict[str, Any]:
        uri = given or storage.join(run_root, "data", name)
        return StageResult("given" if given else f"prepare_{name}", uri, outputs={"data": uri}).to_dict()

    made = {  # the stage results the earlier tasks of the run hand on (their storage layout), unless skipped by URI
        "run_root": run_root, "parent_run_id": "",
        "data": data(values["p1_data_coldstart_uri"], "coldstart"),
        "train": data(values["p1_data_rl_uri"], "rl_data"), "val": data(values["p1_data_eval_uri"], "eval_data"),
        "model": StageResult("given" if values["p2_sft_model_uri"] else "sft", sft_model, model_uri=sft_model,
                             outputs={"model": sft_model}).to_dict(),
    }
    inputs = {k: (made[k] if v is _RUNTIME and k in made else v) for k, v in inputs.items()}
    missing = sorted(k for k, v in inputs.items() if v is _RUNTIME)
    if missing:
        raise ClientError(f"cannot tell the {stage} launcher's inputs {missing} before a run")
    return {k: v for k, v in inputs.items() if not k.startswith("pipelinechannel--")}


def remote_plan(stage: str, params: dict[str, Any], *, root: Path | str = ".", run_id: str = "run-id") -> Any:
    """The remote stage (``dispatch.RemoteStage``: the request it seals, settings, job name) the train
    pipeline's ``stage`` launcher builds (``launcher_inputs`` → the body code); judge credentials are
    assumed present (the pod would mount them)."""
    from mini_o3.dispatch import remote_stage

    from . import bodies

    inputs = launcher_inputs(stage, params, root=root, run_id=run_id)
    run_root = inputs["run_root"]
    gpus = bodies.gpu_count(inputs["gpus_per_worker"], "gpus_per_worker")
    overrides, judge_secret = inputs["overrides"], ""
    if stage == "rl":
        overrides, judge_secret = bodies.rl_judge(overrides, bool(inputs["judge_enabled"]),
                                                  inputs.get("judge_secret_name", ""), credentials=True)
    launch = bodies.stage_launch(
        stage, run_root=run_root, mode=inputs["launch_mode"], ray_address=inputs["ray_address"],
        workers=inputs["workers"], gpus_per_worker=gpus, node_selector=inputs["node_selector"],
        tolerations=inputs["tolerations"], overrides=inputs["launch_overrides"],
        s3_secret_name=inputs["s3_secret_name"], judge_secret_name=judge_secret,
        hf_token_secret_name=inputs["hf_token_secret_name"], work_volume_claim=inputs["work_volume_claim"],
        accelerator=inputs["accelerator"], service_account=inputs["ray_service_account"], engine=inputs.get("engine", ""),
        image=bodies.stage_image(stage, inputs["image_registry"], inputs["image_tag"]))
    tracking = dict(parent_run_id="")  # no MLflow parent run before a run
    if stage == "sft":
        request = bodies.sft_request(data_uri=bodies.out_of(inputs["data"], "data"), model=inputs["base_model"],
                                     run_root=run_root, overrides=overrides, launch=launch, **tracking)
    else:
        request = bodies.rl_request(engine=inputs["engine"], model_uri=bodies.model_of(inputs["model"], "model"),
                                    train_uri=bodies.out_of(inputs["train"], "train"),
                                    val_uri=bodies.out_of(inputs["val"], "val"), run_root=run_root,
                                    overrides=overrides, launch=launch, gpus=gpus, **tracking)
    return remote_stage(request)


def rayjob_for(stage: str, params: dict[str, Any], *, root: Path | str = ".", run_id: str = "run-id",
               namespace: str = "default") -> dict[str, Any]:
    """The RayJob manifest the train pipeline's ``stage`` step submits (``remote_plan``), in ``namespace``."""
    return _manifest(remote_plan(stage, params, root=root, run_id=run_id), namespace)


def review_text(stage: str, params: dict[str, Any], *, root: Path | str = ".", run_id: str = "run-id",
                namespace: str = "default") -> str:
    """``mini-o3 rayjob-manifest``'s output: the sealed request as YAML comments, then the RayJob."""
    plan = remote_plan(stage, params, root=root, run_id=run_id)
    manifest = yaml.safe_dump(_manifest(plan, namespace), sort_keys=False, width=120)
    request = "".join(f"# {line}\n" for line in plan.request.model_dump_json(indent=2).splitlines())
    return f"# request.json the launcher seals at {plan.request_uri} (what `mini-o3 stage run` reads):\n{request}{manifest}"


def _manifest(plan: Any, namespace: str) -> dict[str, Any]:
    from mini_o3.launch import LaunchError, rayjob_manifest

    settings = plan.settings if plan.settings.namespace else plan.settings.model_copy(update={"namespace": namespace})
    try:
        return rayjob_manifest(plan.argv, settings, name=plan.name, owner={})  # no launcher pod yet
    except LaunchError as exc:
        raise ClientError(str(exc)) from exc
