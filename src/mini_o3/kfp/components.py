"""The KFP components: lightweight Python components whose bodies import our package (installed in
the runtime image, ``install_kfp_package=False``) and call one ``mini_o3.kfp.bodies`` function.

``build()`` makes them with the image references of the moment (``mini_o3.images``: env
``MINI_O3_IMAGE_REGISTRY`` / ``MINI_O3_IMAGE_TAG``), so a mirrored registry is one recompile away.
Component bodies are embedded in the compiled YAML as source: they import inside the body and
refer to nothing else in this module. Platform settings (S3 endpoint, MLflow tracking URI) are no
inputs: every task gets them as env from the platform ConfigMap (``pipelines.PLATFORM_CONFIG_MAP``). Large artifacts never pass through KFP: stages read and
write object storage, and each stage task hands its whole stage result (``StageResult`` as a
``dict``: sealed output URIs, model URI, metrics, provenance) to the tasks downstream; a skip branch
hands on the result the given artifact was sealed with. Only the small Metrics / Markdown / HTML
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


def use_artifact(uri: str, kind: str) -> dict:
    """Skip branch of a stage: refuse a missing or half-written artifact, else hand on its stage
    result (the one it was sealed with, else one holding only the URI)."""
    from mini_o3.kfp import bodies

    return bodies.use_artifact(uri=uri, kind=kind)


def prepare_coldstart(source: str, run_root: str, overrides: list, synthetic: list, parent_run_id: str) -> dict:
    """Cold-start parquet (hub id, folder or ``synthetic``) → sealed LLaMA-Factory data; returns the stage result."""
    from mini_o3.kfp import bodies

    return bodies.prepare_coldstart(source=source, run_root=run_root, overrides=overrides, synthetic=synthetic,
                                    parent_run_id=parent_run_id).to_dict()


def prepare_bench(benchmarks: str, name: str, run_root: str, overrides: list, synthetic: list, parent_run_id: str) -> dict:
    """Benchmarks ``name[=source],...`` (``synthetic`` generates) → one sealed collection; returns the stage result."""
    from mini_o3.kfp import bodies

    return bodies.prepare_bench(benchmarks=benchmarks, name=name, run_root=run_root, overrides=overrides,
                                synthetic=synthetic, parent_run_id=parent_run_id).to_dict()


def sft(data: dict, base_model: str, run_root: str, overrides: list, launch_mode: str, ray_address: str,
        workers: int, gpus_per_worker: str, node_selector: dict, tolerations: list, launch_overrides: list,
        s3_secret_name: str, hf_token_secret_name: str, accelerator: str, parent_run_id: str, work_volume_claim: str,
        ray_service_account: str, image_registry: str, image_tag: str, metrics: Output[Metrics]) -> dict:
    """LLaMA-Factory SFT in this pod, or on Ray / a KubeRay RayJob; returns the stage result (sealed
    model and run URIs, metrics)."""
    from mini_o3.kfp import bodies

    gpus = bodies.gpu_count(gpus_per_worker, "gpus_per_worker")
    bodies.log_hardware("sft", launch_mode, accelerator, gpus, workers)

    launch = bodies.stage_launch("sft", run_root=run_root, mode=launch_mode, ray_address=ray_address, workers=workers,
                                 gpus_per_worker=gpus, node_selector=node_selector, tolerations=tolerations,
                                 overrides=launch_overrides, s3_secret_name=s3_secret_name, judge_secret_name="",
                                 hf_token_secret_name=hf_token_secret_name, work_volume_claim=work_volume_claim,
                                 accelerator=accelerator, service_account=ray_service_account,
                                 image=bodies.stage_image("sft", image_registry, image_tag))
    request = bodies.sft_request(data_uri=bodies.out_of(data, "data"), model=base_model, run_root=run_root, overrides=overrides,
                                 launch=launch, parent_run_id=parent_run_id)
    result = bodies.run_request(request)
    for key, value in sorted(result.metrics.items()):
        metrics.log_metric(key, value)
    return result.to_dict()


def rl(engine: str, model: dict, train: dict, val: dict, run_root: str, overrides: list, launch_mode: str,
       ray_address: str, workers: int, gpus_per_worker: str, node_selector: dict, tolerations: list,
       launch_overrides: list, s3_secret_name: str, judge_secret_name: str, judge_enabled: bool,
       hf_token_secret_name: str, accelerator: str, parent_run_id: str, work_volume_claim: str,
       ray_service_account: str, image_registry: str, image_tag: str,
       metrics: Output[Metrics]) -> dict:
    """GRPO (reference engine in this pod, or verl on Ray / a KubeRay RayJob) from the SFT stage's
    model; returns the stage result (sealed model and run URIs, metrics)."""
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
    request = bodies.rl_request(engine=engine, model_uri=bodies.model_of(model, "model"),
                                train_uri=bodies.out_of(train, "train"), val_uri=bodies.out_of(val, "val"),
                                run_root=run_root, overrides=overrides, launch=launch, parent_run_id=parent_run_id,
                                gpus=gpus)
    result = bodies.run_request(request)
    for key, value in sorted(result.metrics.items()):
        metrics.log_metric(key.replace("@", "_at_"), value)
    return result.to_dict()


def evaluate(model: dict, bench: dict, run_root: str, out_name: str, k: int, backend: str, overrides: list,
             judge_secret_name: str, judge_enabled: bool, accelerator: str, gpus: str, parent_run_id: str,
             metrics: Output[Metrics]) -> dict:
    """Avg@k of a model (an upstream stage result) on a benchmark collection (vLLM with tensor
    parallelism over the pod's GPUs, or the local HF policy); returns the stage result."""
    from mini_o3.kfp import bodies

    count = bodies.gpu_count(gpus, "gpus")
    bodies.log_hardware("evaluate", backend, accelerator, count, 1)
    request = bodies.eval_request(model_uri=bodies.model_of(model, "model"), bench_uri=bodies.out_of(bench, "bench"), run_root=run_root, out_name=out_name, k=k,
                                  backend=backend, gpus=count, overrides=overrides, judge_enabled=judge_enabled,
                                  judge_secret_name=judge_secret_name, parent_run_id=parent_run_id)
    result = bodies.run_request(request)
    for key, value in sorted(result.metrics.items()):
        metrics.log_metric(key, value)
    return result.to_dict()


def report(evaluation: dict, run_root: str, base_model: str, sft: dict, rl: dict, base_eval: dict, sft_eval: dict,
           title: str, parent_run_id: str, markdown: Output[Markdown], html: Output[HTML], metrics: Output[Metrics],
           history: str = "", promote_if_better: bool = False) -> dict:
    """The run's report as Markdown and HTML (plots inlined) artifacts, plus Avg@k metrics, from the
    upstream stage results; with the base / SFT evaluations, the learning table first; with a plan
    (``history``), the target's trend first, and ``promote_if_better`` moves ``champion`` to a better candidate."""
    from mini_o3.kfp import bodies

    trained = bool(base_model or sft)  # the train pipeline; evaluate has one model
    models = {"base model": base_model, "SFT model": bodies.model_of(sft, "sft") if sft else "",
              ("RL model" if trained else "model"): bodies.model_of(rl, "rl")}
    result = bodies.report(eval_uri=bodies.out_of(evaluation, "evaluation"), run_root=run_root, models=models,
                           compare_evals={"base": bodies.out_of(base_eval, "base_eval"),
                                          "sft": bodies.out_of(sft_eval, "sft_eval")},
                           sft_run_uri=bodies.run_of(sft, "sft"), rl_run_uri=bodies.run_of(rl, "rl"),
                           title=title, markdown_path=markdown.path, html_path=html.path, parent_run_id=parent_run_id,
                           history=history, promote_if_better=promote_if_better)
    for key, value in sorted(result.metrics.items()):
        metrics.log_metric(key, value)
    return result.to_dict()


def resolve_model(model_ref: str, backend: str,
                  run_root: str) -> NamedTuple("ResolveOutputs", [("model", dict), ("model_info", str)]):
    """The model to evaluate, resolved now: models:/NAME@ALIAS or models:/NAME/VERSION through the
    MLflow Model Registry, else the given sealed URI / hub id (checked); as a stage result, plus what
    it resolved to."""
    from collections import namedtuple

    from mini_o3.kfp import bodies

    model, info = bodies.resolve_model(model_ref=model_ref, backend=backend, run_root=run_root)
    return namedtuple("ResolveOutputs", ["model", "model_info"])(model, info)


def plan_eval(model_info: str, bench: dict, backend: str, k: int, overrides: list, judge_secret_name: str,
              judge_enabled: bool, force: bool, trend_runs: int,
              run_root: str) -> NamedTuple("PlanOutputs", [("reuse_eval_uri", str), ("history", str)]):
    """Skip what did not change: the same model digest, benchmark digests and eval-config hash as a
    finished earlier run of the target → that run's evaluation URI (no evaluation task runs)."""
    from collections import namedtuple

    from mini_o3.kfp import bodies

    reuse, plan = bodies.plan_eval(model_info=model_info, bench_uri=bodies.out_of(bench, "bench"), backend=backend, k=k, overrides=overrides,
                                   judge_enabled=judge_enabled, judge_secret_name=judge_secret_name, force=force,
                                   trend_runs=trend_runs, run_root=run_root)
    return namedtuple("PlanOutputs", ["reuse_eval_uri", "history"])(reuse, plan)


def register_model(rl: dict, sft: dict, evaluation: dict, name: str, alias: str, register_sft: bool,
                   coldstart: dict, rl_data: dict, eval_data: dict, run_root: str, parent_run_id: str) -> str:
    """The final RL model (and the SFT model) as a new version of a registered MLflow model, with
    the run, data and config hashes as tags and the alias moved to it; returns the version's URI."""
    from mini_o3.kfp import bodies

    result = bodies.register(model_uri=bodies.model_of(rl, "rl"), sft_model_uri=bodies.model_of(sft, "sft"),
                             eval_uri=bodies.out_of(evaluation, "evaluation"), name=name, alias=alias,
                             register_sft=register_sft,
                             data_uris={"coldstart": bodies.out_of(coldstart, "coldstart"),
                                        "rl": bodies.out_of(rl_data, "rl_data"),
                                        "eval": bodies.out_of(eval_data, "eval_data")},
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
