"""What the KFP component bodies call, in plain Python (testable without KFP). The bookkeeping
components (init / finish run, skip branches, data, report, registry) have one function each; a
launching stage's component builds its typed request once (``sft_request``, ``rl_request``,
``eval_request``, with ``stage_launch`` for where it runs) and hands it to ``run_request``, i.e.
``mini_o3.dispatch``: in this pod, or sealed and run remotely as ``mini-o3 stage run <uri>``.
SIGTERM is never swallowed: the launcher deletes its remote job and re-raises, so the pod ends
and the run is marked terminated.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

from mini_o3 import storage
from mini_o3.launch.presets import JUDGE_SECRET_KEYS, judge_secret_env, s3_secret_env
from mini_o3.launch.settings import DNS_1123_SUBDOMAIN
from mini_o3.stages import StageError, StageResult, Tracking
from mini_o3.stages.common import basename, is_hub_model

#: Platform settings: the same on every run of a cluster, so no pipeline parameters. The Helm chart
#: writes them into the ConfigMap every task mounts as env (``pipelines.PLATFORM_CONFIG_MAP``);
#: kfp.local tasks inherit them from the embedded run's process. Remote stages get the launcher's.
PLATFORM_ENV = ("MINI_O3_S3_ENDPOINT", "MLFLOW_TRACKING_URI")
HF_TOKEN_KEY = "HF_TOKEN"


def platform_env() -> dict[str, str]:
    """The platform settings this pod has (``PLATFORM_ENV``), for the Ray pods of a remote stage."""
    return {key: os.environ[key] for key in PLATFORM_ENV if os.environ.get(key)}


def _tracking_uri(run_root: str = "") -> str | None:
    """The pod's ``MLFLOW_TRACKING_URI``, else a file store under a local run root, else None (off)."""
    from mini_o3.tracking import resolve_tracking_uri

    local_root = None if not run_root or storage.is_remote(run_root) else storage.local_path(run_root)
    return resolve_tracking_uri(None, local_root)


# -- run bracket ---------------------------------------------------------------------------


def init_run(*, storage_root: str, kfp_run_id: str, pipeline: str, experiment: str,
             params: dict[str, Any]) -> tuple[str, str]:
    """(MLflow parent run id or "", run root URI ``<storage_root>/<kfp run id>``)."""
    from mini_o3.tracking import redact, start_pipeline_run

    if not storage_root:
        raise StageError("storage_root is empty: give an s3:// URI (cluster) or a local folder (embedded runs)")
    run_root = storage.join(storage_root, kfp_run_id)
    parent = start_pipeline_run(experiment=experiment, kfp_run_id=kfp_run_id, pipeline=pipeline,
                                params=redact({**params, "run_root": run_root}),
                                tracking_uri=_tracking_uri(run_root))
    print(f"[mini-o3] run root {run_root}; MLflow parent run {parent or '(tracking off)'}", flush=True)
    return parent or "", run_root


def gpu_count(value: Any, name: str) -> int:
    """A GPU-count pipeline parameter as an int. The parameter is a string because the KFP driver
    turns a pod-resource parameter into a limit only when it is one; bad text fails here, naming it."""
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]+", text):
        raise StageError(f"{name}={value!r} is not a whole number of GPUs (give e.g. \"8\")")
    return int(text)


def secret_name_problem(name: str, value: Any) -> str | None:
    """Why the KFP driver would refuse ``value`` as the Secret name of a ``secretNameParameter``, or
    None. The 2.17 driver fails a task whose Secret name resolves to ``""`` ("failed to resolve
    secret name") before it reads ``optional``, so an empty name can never mean "no Secret"."""
    if not isinstance(value, str) or not value:
        return (f"{name} is empty: KFP refuses an empty Secret name even for an optional Secret; keep a name "
                "(the Secret need not exist when it is optional)" + ("; to score without the LLM judge set "
                                                                    "the judge_enabled parameter to false"
                                                                    if "judge" in name else ""))
    if len(value) > 253 or not DNS_1123_SUBDOMAIN.match(value):
        return f"{name}={value!r} is not a Secret name (a DNS-1123 subdomain: lower-case letters, digits, '-', '.')"
    return None


def preflight(*, launches: Sequence[dict[str, Any]] = (), work_volume_claim: str = "",
              gpu_counts: dict[str, Any] | None = None, secret_names: dict[str, Any] | None = None) -> None:
    """Refuse, before any stage runs, settings a GPU task or a remote stage would refuse hours later.

    ``launches``: one ``{"stage", "skip_uri", "mode", "workers", "overrides"}`` per launching stage
    (a stage whose ``skip_uri`` is set does not run): a RayJob with worker pods needs the shared work
    volume (``mini_o3.launch.shared_work_problem``). ``gpu_counts``: pipeline parameter → GPU count
    (``gpu_count``). ``secret_names``: pipeline parameter → Secret name (``secret_name_problem``)."""
    from mini_o3.launch import LaunchSettings, shared_work_problem
    from mini_o3.overrides import apply_overrides

    for name, value in sorted((gpu_counts or {}).items()):
        gpu_count(value, name)
    for name, value in sorted((secret_names or {}).items()):
        problem = secret_name_problem(name, value)
        if problem:
            raise StageError(problem)
    for launch in launches:
        if launch.get("skip_uri"):
            continue
        settings = LaunchSettings(mode=launch.get("mode", "inprocess"), workers=int(launch.get("workers", 1)),
                                  work_volume_claim=work_volume_claim or None)
        overrides = [o for o in launch.get("overrides") or [] if o.split("=", 1)[0].strip() in ("mode", "workers",
                                                                                               "work_volume_claim")]
        settings = apply_overrides(settings, overrides, label="launch setting") if overrides else settings
        problem = shared_work_problem(settings)
        if problem:
            raise StageError(f"{launch.get('stage', 'a stage')}: {problem}")


def finish_run(*, storage_root: str, kfp_run_id: str, pipeline: str, experiment: str, state: str,
               error: str = "") -> str:
    """Exit handler: delete the run's live RayJobs (``launch.cleanup``: a cancelled run's launchers
    may not have), then close the parent run FINISHED or FAILED (found again by its KFP run id tag);
    returns the status."""
    from mini_o3.launch.cleanup import cleanup_run_in_cluster
    from mini_o3.tracking import finish_pipeline_run, start_pipeline_run

    try:
        cleanup_run_in_cluster(kfp_run_id, succeeded=state.upper() == "SUCCEEDED")
    except Exception as exc:  # noqa: BLE001 - the MLflow status still gets closed; the log says what is left
        print(f"[mini-o3] WARNING could not clean up the RayJobs of run {kfp_run_id}: {type(exc).__name__}: {exc}; "
              f"check: kubectl get rayjobs -l mini-o3/kfp-run-id={kfp_run_id}", flush=True)
    run_root = storage.join(storage_root, kfp_run_id) if storage_root else ""
    uri = _tracking_uri(run_root)
    parent = start_pipeline_run(experiment=experiment, kfp_run_id=kfp_run_id, pipeline=pipeline, params={},
                                tracking_uri=uri)
    status = "FINISHED" if state.upper() == "SUCCEEDED" else "FAILED"
    if parent:
        finish_pipeline_run(parent, status=status, tracking_uri=uri)
    print(f"[mini-o3] pipeline {state}{': ' + error if error else ''}; MLflow parent {parent or '-'} → {status}", flush=True)
    return status


def use_artifact(*, uri: str, kind: str) -> dict[str, Any]:
    """The skip branch of a stage: check the given artifact is usable and hand on its stage result
    (``stages.common.given_result``: the one it was sealed with, else one holding only the URI).

    ``kind="model"`` also accepts hub models (``hf://org/name``); anything else must be sealed."""
    from mini_o3.stages.common import given_result

    if not (kind.startswith("model") and is_hub_model(uri)) and not storage.is_complete(uri):
        raise storage.IncompleteArtifactError(
            f"{kind} URI {uri!r} is not a complete artifact (no {storage.COMPLETION_MARKER}): it is missing or half-written")
    result = given_result(uri, kind)
    print(f"[mini-o3] using existing {kind} {uri}" + (f" (from a {result.stage} stage)" if result.stage != "given" else ""),
          flush=True)
    return result.to_dict()


def model_of(result: dict[str, Any], name: str) -> str:
    """The model URI of an upstream task's stage result (input ``name``)."""
    parsed = StageResult.from_dict(result, name)
    if parsed.model_uri is None:
        raise StageError(f"{name}: the {parsed.stage} stage result at {parsed.out_uri!r} holds no model")
    return parsed.model_uri


def out_of(result: dict[str, Any], name: str) -> str:
    """The sealed output URI of an upstream task's stage result (input ``name``; {} → "")."""
    return StageResult.from_dict(result, name).out_uri if result else ""


def run_of(result: dict[str, Any], name: str) -> str:
    """The sealed ``run/`` output (logs, curves) of an upstream SFT / RL stage result, "" for a model
    given without one."""
    return StageResult.from_dict(result, name).outputs.get("run", "") if result else ""


# -- stages ----------------------------------------------------------------------------------


def judge_available(judge_secret_name: str, stage: str) -> bool:
    """Whether this pod got judge credentials: the judge Secret is mounted optionally (a user without
    one gets rule scoring, as the chart and pipeline docs promise), so a named but missing Secret
    shows up as no judge env here; say so loudly instead of failing deep inside the stage."""
    if not judge_secret_name:
        return False
    if any(os.environ.get(key) for key in JUDGE_SECRET_KEYS):
        return True
    print(f"[mini-o3] WARNING {stage}: judge Secret {judge_secret_name} is missing or has none of "
          f"{', '.join(JUDGE_SECRET_KEYS)}; scoring with rule scorers only", flush=True)
    return False


def _tracking(parent_run_id: str, run_root: str) -> Tracking:
    return Tracking(parent_run_id or None, _tracking_uri(run_root) if parent_run_id else None)


def prepare_coldstart(*, source: str, run_root: str, overrides: Sequence[str], synthetic: Sequence[str],
                      parent_run_id: str) -> StageResult:
    from mini_o3.stages import prepare_coldstart_stage

    out_uri = storage.join(run_root, "data", "coldstart")
    return prepare_coldstart_stage(source, out_uri, overrides=list(overrides), synthetic=list(synthetic),
                                   tracking=_tracking(parent_run_id, run_root))


def prepare_bench(*, benchmarks: str, name: str, run_root: str, overrides: Sequence[str], synthetic: Sequence[str],
                  parent_run_id: str) -> StageResult:
    from mini_o3.stages import prepare_bench_stage

    out_uri = storage.join(run_root, "data", name)
    return prepare_bench_stage(benchmarks, out_uri, overrides=list(overrides), synthetic=list(synthetic),
                               tracking=_tracking(parent_run_id, run_root), stage=f"prepare_{name}")


def launch_settings(*, mode: str, ray_address: str, workers: int, gpus_per_worker: int, node_selector: dict,
                    tolerations: list, overrides: Sequence[str], image: str, s3_secret_name: str,
                    judge_secret_name: str, hf_token_secret_name: str, env: dict[str, str],
                    work_volume_claim: str = "", gpu_resource: str = "nvidia.com/gpu",
                    service_account: str = "") -> Any:
    """``LaunchSettings`` of a remote stage: the pipeline's launch parameters, the GPU pool's node
    selector / tolerations and GPU resource name, the secrets as ``secretKeyRef`` env (names only),
    plain env, the shared work volume (``p0_work_volume_claim``) the Ray pods mount and their
    service account (``p0_ray_service_account``)."""
    from mini_o3.launch import LaunchSettings, SecretRef
    from mini_o3.overrides import apply_overrides

    secret_env = s3_secret_env(s3_secret_name) if s3_secret_name else {}
    if judge_secret_name:
        secret_env.update(judge_secret_env(judge_secret_name))
    if hf_token_secret_name:
        secret_env[HF_TOKEN_KEY] = SecretRef(name=hf_token_secret_name, key=HF_TOKEN_KEY, optional=True)
    settings = LaunchSettings(mode=mode, ray_address=ray_address or None, workers=workers,
                              gpus_per_worker=gpus_per_worker, node_selector=dict(node_selector or {}),
                              tolerations=list(tolerations or []), image=image or None,
                              env={k: v for k, v in env.items() if v}, secret_env=secret_env,
                              work_volume_claim=work_volume_claim or None, gpu_resource=gpu_resource or "nvidia.com/gpu",
                              service_account=service_account or None)
    return apply_overrides(settings, list(overrides), label="launch setting") if overrides else settings


def stage_image(runtime: str, registry: str, tag: str) -> str:
    """The Ray pods' image of a stage: the scheme the pipeline was compiled with (constant inputs of
    the launcher component), else ``images.image_ref`` from this process's env."""
    from mini_o3 import images

    return images.image_ref(runtime, registry=registry or None, tag=tag or None)


def stage_launch(stage: str, *, run_root: str, mode: str, ray_address: str, workers: int, gpus_per_worker: int,
                 node_selector: dict, tolerations: list, overrides: Sequence[str], s3_secret_name: str,
                 judge_secret_name: str, hf_token_secret_name: str, work_volume_claim: str, accelerator: str = "nvidia.com/gpu", service_account: str = "",
                 image: str = "", engine: str = "") -> Any:
    """Where a launching stage (sft | rl) of this run runs, from its component's inputs. ``inprocess``:
    this pod. Remote: ``launch_settings`` with, ahead of the user's overrides (theirs win), the
    worker pods' CPUs sized for the stage's Ray placement (LLaMA-Factory 0.9.5: {GPU: 1, CPU: 10} per
    GPU; verl: 3 CPUs per GPU; the reference engine runs on the head) and the RayJob deadline of the
    stage (``deadlines.rayjob_deadline``: a longer or no deadline is refused); a RayJob is labelled
    with the KFP run id (the last part of ``run_root``; the exit handler deletes by that label)."""
    from mini_o3.launch import LaunchSettings
    from mini_o3.launch.cleanup import run_labels
    from mini_o3.launch.presets import sft_cpus_per_worker, verl_cpus_per_worker

    from .deadlines import deadline_problem, rayjob_deadline

    if mode == "inprocess":
        return LaunchSettings()
    cpus = sft_cpus_per_worker if stage == "sft" else verl_cpus_per_worker if engine == "verl" else None
    sized = [f"cpus_per_worker={cpus(gpus_per_worker)}"] if cpus and gpus_per_worker > 0 else []
    settings = launch_settings(
        mode=mode, ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
        node_selector=node_selector, tolerations=tolerations, image=image or stage_image(stage, "", ""),
        overrides=[*sized, f"active_deadline_seconds={rayjob_deadline(stage)}", *(overrides or [])],
        s3_secret_name=s3_secret_name, judge_secret_name=judge_secret_name, hf_token_secret_name=hf_token_secret_name,
        env=platform_env(),
        work_volume_claim=work_volume_claim, gpu_resource=accelerator, service_account=service_account)
    if settings.mode == "rayjob":
        problem = deadline_problem(stage, settings.active_deadline_seconds)
        if problem:
            raise StageError(problem)
        settings = settings.model_copy(update={"labels": {**settings.labels, **run_labels(basename(run_root))}})
    return settings


def sft_request(*, data_uri: str, model: str, run_root: str, overrides: Sequence[str], launch: Any,
                parent_run_id: str) -> Any:
    """The ``SFTRequest`` of this run: output ``<run_root>/sft``."""
    from mini_o3.stages import SFTRequest

    return SFTRequest(data_uri=data_uri, model=model, out_uri=storage.join(run_root, "sft"), overrides=list(overrides),
                      tracking=_tracking(parent_run_id, run_root), launch=launch)


def rl_judge(overrides: Sequence[str], judge_enabled: bool, judge_secret_name: str,
             credentials: bool | None = None) -> tuple[list[str], str]:
    """(RL overrides, judge Secret name of the Ray pods) for the judge setting: off (``judge_enabled``
    false, or no judge credentials in this pod: ``credentials`` None = look at the env) →
    ``judge.enabled=false`` ahead of the user's overrides (an explicit one still wins); switched off →
    no judge Secret on the Ray pods."""
    secret = judge_secret_name if judge_enabled else ""
    if credentials is None:
        credentials = judge_enabled and judge_available(secret, "rl")
    if not judge_enabled or not credentials:
        return ["judge.enabled=false", *overrides], secret
    return list(overrides), secret


def rl_request(*, engine: str, model_uri: str, train_uri: str, val_uri: str, run_root: str, overrides: Sequence[str],
               launch: Any, parent_run_id: str, gpus: int) -> Any:
    """The ``RLRequest`` of this run: output ``<run_root>/rl``; in this pod the reference engine uses
    its ``gpus`` (remote runs take nodes and GPUs from the launch settings, ``dispatch.remote_form``)."""
    from mini_o3.stages import RLRequest

    return RLRequest(engine=engine, model_uri=model_uri, train_uris=[train_uri], val_uris=[val_uri] if val_uri else [],
                     out_uri=storage.join(run_root, "rl"), overrides=list(overrides), nnodes=1,
                     gpus_per_node=max(1, gpus), tracking=_tracking(parent_run_id, run_root),
                     launch=launch)


def rule_protocol_overrides() -> list[str]:
    """EvalConfig overrides that ask for rule-only scoring explicitly (``protocol=rule``, where the
    EvalConfig has a protocol; the default protocol "paper" judges every sample with the LLM judge)."""
    from mini_o3.evaluate.config import EvalConfig

    return ["protocol=rule"] if "protocol" in EvalConfig.model_fields else []


def eval_request(*, model_uri: str, bench_uri: str, run_root: str, k: int, backend: str, overrides: Sequence[str],
                 judge_enabled: bool, judge_secret_name: str, parent_run_id: str, gpus: int = 1,
                 out_name: str = "eval") -> Any:
    """The ``EvalRequest`` of this run into ``<run_root>/<out_name>``: with the LLM judge
    (``judge_enabled`` and the judge Secret's keys in this pod), else with rule scorers under protocol
    "rule" (asked for explicitly; a user override still wins)."""
    from mini_o3.stages import EvalRequest

    judge = judge_enabled and judge_available(judge_secret_name, "evaluate")
    if not judge:
        overrides = [*rule_protocol_overrides(), *overrides]
    return EvalRequest(model_uri=model_uri, bench_uris=[bench_uri], out_uri=storage.join(run_root, out_name),
                       k=k or None, backend=backend, overrides=list(overrides), judge=judge, gpus=max(1, gpus),
                       tracking=_tracking(parent_run_id, run_root))


def run_request(request: Any) -> StageResult:
    """Run a stage request here or remotely (``mini_o3.dispatch.run_stage``)."""
    from mini_o3.dispatch import run_stage

    return run_stage(request)


def visible_gpus() -> int:
    """GPUs this process can use: the NVIDIA device nodes, narrowed by ``CUDA_VISIBLE_DEVICES``."""
    import glob

    devices = len(glob.glob("/dev/nvidia[0-9]*"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = min(devices, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))
    return devices


def hardware_line(stage: str, mode: str, accelerator: str, count: int, workers: int, gpus_here: int) -> str:
    """What the stage runs on. In-process stages state the GPUs actually here: kfp.local and a CPU
    pod ignore the pipeline's accelerator request, so "8 x nvidia.com/gpu" would be untrue there."""
    if mode not in ("inprocess", "vllm", "local"):
        return f"[mini-o3] {stage}: mode {mode}, {count} x {accelerator} on each of {workers} Ray worker pod(s)"
    if gpus_here == 0:
        return f"[mini-o3] {stage}: mode {mode}, on CPU (no GPU on this machine)"
    return f"[mini-o3] {stage}: mode {mode}, {min(count, gpus_here) if count else gpus_here} x {accelerator} on this pod"


def log_hardware(stage: str, mode: str, accelerator: str, count: int, workers: int) -> None:
    """One pod-log line with what the stage runs on (``hardware_line``)."""
    print(hardware_line(stage, mode, accelerator, count, workers, visible_gpus()), flush=True)


def report(*, eval_uri: str, run_root: str, models: dict[str, str], sft_run_uri: str, rl_run_uri: str, title: str,
           markdown_path: str, html_path: str, parent_run_id: str,
           compare_evals: dict[str, str] | None = None, history: str = "",
           promote_if_better: bool = False) -> StageResult:
    from mini_o3.stages import report_stage

    return report_stage(eval_uri, storage.join(run_root, "report"), models=models, compare_evals=compare_evals,
                        sft_run_uri=sft_run_uri,
                        rl_run_uri=rl_run_uri, title=title, markdown_path=markdown_path, html_path=html_path,
                        tracking=_tracking(parent_run_id, run_root), history=history or None,
                        promote_if_better=promote_if_better)


# -- scheduled evaluation: registry, plan ----------------------------------------------------


def resolve_model(*, model_ref: str, backend: str, run_root: str) -> tuple[dict[str, Any], str]:
    """(stage result of the model to evaluate, ``ResolvedModel`` as JSON) of the evaluate pipeline's
    ``model_uri``: ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` are looked up in the registry now;
    the model must be a sealed artifact or a hub id (``use_artifact``). An ``openai:`` backend may leave it empty."""
    from mini_o3.registry import RegistryError, ResolvedModel, is_registry_ref, resolve

    if backend.startswith("openai:") and not model_ref.strip():
        return StageResult("given", "", model_uri="").to_dict(), json.dumps(ResolvedModel("", "", "").to_dict())
    try:
        if is_registry_ref(model_ref):
            resolved = resolve(model_ref, _tracking_uri(run_root))
            model = use_artifact(uri=resolved.uri, kind=f"model ({model_ref} → version {resolved.version})")
        else:
            model = use_artifact(uri=model_ref, kind="model")
            resolved = resolve(model_ref, None)
    except RegistryError as exc:
        raise StageError(f"model_uri: {exc}") from exc
    print(f"[mini-o3] model {model_ref} → {resolved.label}: {resolved.uri} (digest {resolved.digest or '-'})", flush=True)
    return model, json.dumps(resolved.to_dict())


def plan_eval(*, model_info: str, bench_uri: str, backend: str, k: int, overrides: Sequence[str], judge_enabled: bool,
              judge_secret_name: str, force: bool, trend_runs: int, run_root: str) -> tuple[str, str]:
    """(URI of the earlier evaluation to reuse or "", the ``EvalPlan`` as JSON): the evaluation
    settings are those the evaluate task would use (same judge rule, ``stages.evaluate.eval_config``)."""
    from mini_o3.registry import ResolvedModel
    from mini_o3.stages.evaluate import eval_config
    from mini_o3.stages.history import plan_eval as make_plan

    judge = judge_enabled and judge_available(judge_secret_name, "plan")
    if not judge:
        overrides = [*rule_protocol_overrides(), *overrides]
    config, _ = eval_config(list(overrides), k or None, judge)
    plan = make_plan(model=ResolvedModel(**json.loads(model_info)), backend=backend, bench_uri=bench_uri, config=config,
                     tracking_uri=_tracking_uri(run_root), force=force, kfp_run_id=basename(run_root),
                     trend_runs=trend_runs)
    print(f"[mini-o3] plan: {plan.reason}" + (f"; reusing {plan.reuse_eval_uri}" if plan.reuse_eval_uri else
                                             "; evaluating"), flush=True)
    return plan.reuse_eval_uri, plan.to_json()


def register(*, model_uri: str, sft_model_uri: str, eval_uri: str, name: str, alias: str, register_sft: bool,
             data_uris: dict[str, str], run_root: str, parent_run_id: str) -> StageResult:
    """The train pipeline's final RL model (and the SFT model when ``register_sft``) as a new version
    of ``name`` with ``alias`` (``stages.register``); an empty ``name`` registers nothing."""
    from mini_o3.stages.register import register_stage

    tracking = _tracking(parent_run_id, run_root)
    return register_stage(model_uri if name else "", storage.join(run_root, "registered"), name=name, alias=alias,
                          sft_model_uri=sft_model_uri if name and register_sft else "", data_uris=data_uris,
                          eval_uri=eval_uri, kfp_run_id=basename(run_root), tracking=tracking,
                          registry_uri=_tracking_uri(run_root))


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
