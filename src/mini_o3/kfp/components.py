"""The KFP components: lightweight Python components whose bodies import our package (installed in
the runtime image, ``install_kfp_package=False``) and call one ``mini_o3.kfp.bodies`` function.

``build()`` makes them with the image references of the moment (``mini_o3.images``: env
``MINI_O3_IMAGE_REGISTRY`` / ``MINI_O3_IMAGE_TAG``), so a mirrored registry is one recompile away.
Component bodies are embedded in the compiled YAML as source: they import inside the body and
refer to nothing else in this module. Platform settings (S3 endpoint, MLflow tracking URI) are no
inputs: every task gets them as env from the platform ConfigMap (``pipelines.PLATFORM_CONFIG_MAP``). Large artifacts never pass through KFP: stages read and
write object storage and hand URIs on as strings; only the small Metrics / Markdown / HTML
artifacts go through the KFP launcher.

GPU components take the accelerator type and count they are scheduled with as inputs too: the
pod log records them, ``evaluate`` sizes vLLM's tensor parallelism by them, and kfp.local 2.17
needs every parameter a task's resources reference among its inputs (else it fails with
"Parent pipeline input argument 'pipelinechannel--...' not found" inside condition branches).
Counts are STRING inputs (converted by ``bodies.gpu_count``): the KFP 2.17 driver resolves a pod
resource parameter with ``GetStringValue()``, so an integer parameter gives no GPU limit at all.
"""

# No ``from __future__ import annotations``: KFP reads the real annotation objects.
from dataclasses import dataclass
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics, Output


def init_run(storage_root: str, kfp_run_id: str, pipeline: str, experiment: str, params: dict,
             work_volume_claim: str = "", sft_skip_uri: str = "", sft_launch_mode: str = "inprocess", sft_workers: int = 0, sft_launch_overrides: list = [],  # noqa: B006
             rl_skip_uri: str = "", rl_launch_mode: str = "inprocess", rl_workers: int = 0,
             rl_launch_overrides: list = [], gpu_counts: dict = {}, secret_names: dict = {}  # noqa: B006
             ) -> NamedTuple("InitOutputs", [("parent_run_id", str), ("run_root", str)]):
    """Check the run's launch settings, GPU counts and Secret names (before any GPU work), start the
    MLflow parent run (tagged with the KFP run id) and fix the run's storage root."""
    from collections import namedtuple

    from mini_o3.kfp import bodies

    bodies.preflight(gpu_counts=gpu_counts, secret_names=secret_names, launches=[
        {"stage": "sft", "skip_uri": sft_skip_uri, "mode": sft_launch_mode, "workers": sft_workers,
         "overrides": sft_launch_overrides},
        {"stage": "rl", "skip_uri": rl_skip_uri, "mode": rl_launch_mode, "workers": rl_workers,
         "overrides": rl_launch_overrides},
    ], work_volume_claim=work_volume_claim)
    parent, root = bodies.init_run(storage_root=storage_root, kfp_run_id=kfp_run_id, pipeline=pipeline,
                                   experiment=experiment, params=params)
    return namedtuple("InitOutputs", ["parent_run_id", "run_root"])(parent, root)


def finish_run(storage_root: str, kfp_run_id: str, pipeline: str, experiment: str,
               status: dsl.PipelineTaskFinalStatus):
    """Exit handler: close the MLflow parent run FINISHED, or FAILED when a stage failed."""
    from mini_o3.kfp import bodies

    bodies.finish_run(storage_root=storage_root, kfp_run_id=kfp_run_id, pipeline=pipeline, experiment=experiment,
                      state=status.state, error=str(status.error_message or ""))


def use_artifact(uri: str, kind: str) -> str:
    """Skip branch of a stage: refuse a missing or half-written artifact, else pass its URI on."""
    from mini_o3.kfp import bodies

    return bodies.use_artifact(uri=uri, kind=kind)


def prepare_coldstart(source: str, run_root: str, overrides: list, synthetic: list, parent_run_id: str) -> str:
    """Cold-start parquet (hub id, folder or ``synthetic``) → sealed LLaMA-Factory data; returns its URI."""
    from mini_o3.kfp import bodies

    return bodies.prepare_coldstart(source=source, run_root=run_root, overrides=overrides, synthetic=synthetic,
                                    parent_run_id=parent_run_id)


def prepare_bench(benchmarks: str, name: str, run_root: str, overrides: list, synthetic: list, parent_run_id: str) -> str:
    """Benchmarks ``name[=source],...`` (``synthetic`` generates) → one sealed collection; returns its URI."""
    from mini_o3.kfp import bodies

    return bodies.prepare_bench(benchmarks=benchmarks, name=name, run_root=run_root, overrides=overrides,
                                synthetic=synthetic, parent_run_id=parent_run_id)


def sft(data_uri: str, base_model: str, run_root: str, overrides: list, launch_mode: str, ray_address: str,
        workers: int, gpus_per_worker: str, node_selector: dict, tolerations: list, launch_overrides: list,
        s3_secret_name: str, hf_token_secret_name: str, accelerator: str, parent_run_id: str, work_volume_claim: str,
        ray_service_account: str, image_registry: str, image_tag: str, metrics: Output[Metrics]) -> NamedTuple("SFTOutputs", [("model_uri", str)]):
    """LLaMA-Factory SFT in this pod, or on Ray / a KubeRay RayJob; returns the sealed model URI."""
    from collections import namedtuple

    from mini_o3.kfp import bodies

    gpus = bodies.gpu_count(gpus_per_worker, "gpus_per_worker")
    bodies.log_hardware("sft", launch_mode, accelerator, gpus, workers)

    launch = bodies.stage_launch("sft", run_root=run_root, mode=launch_mode, ray_address=ray_address, workers=workers,
                                 gpus_per_worker=gpus, node_selector=node_selector, tolerations=tolerations,
                                 overrides=launch_overrides, s3_secret_name=s3_secret_name, judge_secret_name="",
                                 hf_token_secret_name=hf_token_secret_name, work_volume_claim=work_volume_claim,
                                 accelerator=accelerator, service_account=ray_service_account,
                                 image=bodies.stage_image("sft", image_registry, image_tag))
    request = bodies.sft_request(data_uri=data_uri, model=base_model, run_root=run_root, overrides=overrides,
                                 launch=launch, parent_run_id=parent_run_id)
    result = bodies.run_request(request)
    for key, value in sorted(result.metrics.items()):
        metrics.log_metric(key, value)
    return namedtuple("SFTOutputs", ["model_uri"])(result.model_uri)


def rl(engine: str, model_uri: str, train_uri: str, val_uri: str, run_root: str, overrides: list, launch_mode: str,
       ray_address: str, workers: int, gpus_per_worker: str, node_selector: dict, tolerations: list,
       launch_overrides: list, s3_secret_name: str, judge_secret_name: str, judge_enabled: bool,
       hf_token_secret_name: str, accelerator: str, parent_run_id: str, work_volume_claim: str,
       ray_service_account: str, image_registry: str, image_tag: str,
       metrics: Output[Metrics]) -> NamedTuple("RLOutputs", [("model_uri", str)]):
    """GRPO (reference engine in this pod, or verl on Ray / a KubeRay RayJob); returns the sealed model URI."""
    from collections import namedtuple

    from mini_o3.kfp import bodies

    gpus = bodies.gpu_count(gpus_per_worker, "gpus_per_worker")
    bodies.log_hardware("rl", launch_mode, accelerator, gpus, workers)

    overrides, judge_secret = bodies.rl_judge(overrides, judge_enabled, judge_secret_name)
    launch = bodies.stage_launch("rl", run_root=run_root, mode=launch_mode, ray_address=ray_address, workers=workers,
                                 gpus_per_worker=gpus, node_selector=node_selector, tolerations=tolerations,
                                 overrides=launch_overrides, s3_secret_name=s3_secret_name,
                                 judge_secret_name=judge_secret, hf_token_secret_name=hf_token_secret_name,
                                 work_volume_claim=work_volume_claim, accelerator=accelerator,
                                 service_account=ray_service_account, engine=engine,
                                 image=bodies.stage_image("rl", image_registry, image_tag))
    request = bodies.rl_request(engine=engine, model_uri=model_uri, train_uri=train_uri, val_uri=val_uri,
                                run_root=run_root, overrides=overrides, launch=launch, parent_run_id=parent_run_id,
                                gpus=gpus)
    result = bodies.run_request(request)
    for key, value in sorted(result.metrics.items()):
        metrics.log_metric(key.replace("@", "_at_"), value)
    return namedtuple("RLOutputs", ["model_uri"])(result.model_uri)


def evaluate(model_uri: str, bench_uri: str, run_root: str, out_name: str, k: int, backend: str, overrides: list,
             judge_secret_name: str, judge_enabled: bool, accelerator: str, gpus: str, parent_run_id: str,
             metrics: Output[Metrics]) -> str:
    """Avg@k of a model on a benchmark collection (vLLM with tensor parallelism over the pod's GPUs,
    or the local HF policy); returns the eval URI."""
    from mini_o3.kfp import bodies

    count = bodies.gpu_count(gpus, "gpus")
    bodies.log_hardware("evaluate", backend, accelerator, count, 1)
    request = bodies.eval_request(model_uri=model_uri, bench_uri=bench_uri, run_root=run_root, out_name=out_name, k=k,
                                  backend=backend, gpus=count, overrides=overrides, judge_enabled=judge_enabled,
                                  judge_secret_name=judge_secret_name, parent_run_id=parent_run_id)
    result = bodies.run_request(request)
    for key, value in sorted(result.metrics.items()):
        metrics.log_metric(key, value)
    return result.out_uri


def report(eval_uri: str, run_root: str, base_model: str, sft_model_uri: str, rl_model_uri: str, base_eval_uri: str,
           sft_eval_uri: str, title: str, parent_run_id: str, markdown: Output[Markdown], html: Output[HTML], metrics: Output[Metrics], history: str = "",
           promote_if_better: bool = False) -> str:
    """The run's report as Markdown and HTML (plots inlined) artifacts, plus Avg@k metrics; with the
    base / SFT evaluations, the learning table first; with a plan (``history``), the target's trend
    first, and ``promote_if_better`` moves ``champion`` to a better candidate."""
    from mini_o3.kfp import bodies

    trained = bool(base_model or sft_model_uri)  # the train pipeline; evaluate has one model
    models = {"base model": base_model, "SFT model": sft_model_uri, ("RL model" if trained else "model"): rl_model_uri}
    result = bodies.report(eval_uri=eval_uri, run_root=run_root, models=models,
                           compare_evals={"base": base_eval_uri, "sft": sft_eval_uri},
                           sft_run_uri=bodies.run_uri_of(sft_model_uri), rl_run_uri=bodies.run_uri_of(rl_model_uri),
                           title=title, markdown_path=markdown.path, html_path=html.path, parent_run_id=parent_run_id,
                           history=history, promote_if_better=promote_if_better)
    for key, value in sorted(result.metrics.items()):
        metrics.log_metric(key, value)
    return result.out_uri


def resolve_model(model_ref: str, backend: str,
                  run_root: str) -> NamedTuple("ResolveOutputs", [("model_uri", str), ("model_info", str)]):
    """The model to evaluate, resolved now: models:/NAME@ALIAS or models:/NAME/VERSION through the
    MLflow Model Registry, else the given sealed URI / hub id (checked); plus what it resolved to."""
    from collections import namedtuple

    from mini_o3.kfp import bodies

    uri, info = bodies.resolve_model(model_ref=model_ref, backend=backend, run_root=run_root)
    return namedtuple("ResolveOutputs", ["model_uri", "model_info"])(uri, info)


def plan_eval(model_info: str, bench_uri: str, backend: str, k: int, overrides: list, judge_secret_name: str,
              judge_enabled: bool, force: bool, trend_runs: int,
              run_root: str) -> NamedTuple("PlanOutputs", [("reuse_eval_uri", str), ("history", str)]):
    """Skip what did not change: the same model digest, benchmark digests and eval-config hash as a
    finished earlier run of the target → that run's evaluation URI (no evaluation task runs)."""
    from collections import namedtuple

    from mini_o3.kfp import bodies

    reuse, plan = bodies.plan_eval(model_info=model_info, bench_uri=bench_uri, backend=backend, k=k, overrides=overrides,
                                   judge_enabled=judge_enabled, judge_secret_name=judge_secret_name, force=force,
                                   trend_runs=trend_runs, run_root=run_root)
    return namedtuple("PlanOutputs", ["reuse_eval_uri", "history"])(reuse, plan)


def register_model(model_uri: str, sft_model_uri: str, eval_uri: str, name: str, alias: str, register_sft: bool,
                   coldstart_uri: str, rl_data_uri: str, eval_data_uri: str, run_root: str, parent_run_id: str) -> str:
    """The final RL model (and the SFT model) as a new version of a registered MLflow model, with
    the run, data and config hashes as tags and the alias moved to it; returns the version's URI."""
    from mini_o3.kfp import bodies

    result = bodies.register(model_uri=model_uri, sft_model_uri=sft_model_uri, eval_uri=eval_uri, name=name,
                             alias=alias, register_sft=register_sft,
                             data_uris={"coldstart": coldstart_uri, "rl": rl_data_uri, "eval": eval_data_uri},
                             run_root=run_root, parent_run_id=parent_run_id)
    return result.info["versions"].get("rl", {}).get("ref", "")


#: component function → runtime image (``mini_o3.images``; contracts: which image runs what).
RUNTIMES = {
    init_run: "base", finish_run: "base", use_artifact: "base", prepare_coldstart: "base", prepare_bench: "base",
    sft: "sft", rl: "rl", evaluate: "eval", report: "base", resolve_model: "base", plan_eval: "base",
    register_model: "base",
}


@dataclass(frozen=True)
class Components:
    """The components, built against one set of image references."""

    init_run: dsl.base_component.BaseComponent
    finish_run: dsl.base_component.BaseComponent
    use_artifact: dsl.base_component.BaseComponent
    prepare_coldstart: dsl.base_component.BaseComponent
    prepare_bench: dsl.base_component.BaseComponent
    sft: dsl.base_component.BaseComponent
    rl: dsl.base_component.BaseComponent
    evaluate: dsl.base_component.BaseComponent
    report: dsl.base_component.BaseComponent
    resolve_model: dsl.base_component.BaseComponent
    plan_eval: dsl.base_component.BaseComponent
    register_model: dsl.base_component.BaseComponent
    #: the image scheme they were built with (``{registry}/mini-o3-{runtime}:{tag}``): the Ray
    #: launchers get it as constant inputs, so RayJob pods use the images the pipeline was compiled for.
    image_registry: str = ""
    image_tag: str = ""

    def items(self):
        return [(name, getattr(self, name)) for name in self.__dataclass_fields__ if not name.startswith("image_")]


def build() -> Components:
    """Every component with ``base_image`` = ``images.image_ref(<its runtime>)`` as the env says now."""
    from mini_o3 import images

    made = {
        func.__name__: dsl.component(func, base_image=images.image_ref(runtime), install_kfp_package=False)
        for func, runtime in RUNTIMES.items()
    }
    scheme = images.parse_image_ref(images.image_ref("base"))
    return Components(**made, image_registry=scheme["registry"], image_tag=scheme["tag"])
