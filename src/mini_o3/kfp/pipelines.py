"""The two pipelines: ``mini-o3-train`` (data → SFT → RL → evaluate → report) and
``mini-o3-evaluate`` (model + benchmarks + k → report; the one users schedule).

Skipping: a stage runs only when its ``*_uri`` parameter is empty; otherwise a small
``use-artifact`` task checks the given artifact is sealed and passes it on. Branches are
``dsl.If/Elif/Else`` joined by ``dsl.OneOf``, so a skipped GPU stage never schedules a GPU pod,
and a stage launched on Ray / KubeRay runs in a CPU launcher pod instead of a GPU pod.

Every run is bracketed by ``init-run`` (MLflow parent run tagged with the KFP run id, storage root
``<storage_root>/<run id>``) and ``finish-run`` in a ``dsl.ExitHandler`` (parent closed FINISHED,
or FAILED when a stage failed). Caching is off on every task: each writes object storage under
its run's root and logs to MLflow. Secrets are referenced by NAME only (pipeline parameters,
``kubernetes.use_secret_as_env``); their values never enter the pipeline spec or the run record.
A Secret name is never empty: the KFP 2.17 driver refuses ``""`` for a ``secretNameParameter``
before it reads ``optional``, so ``init-run`` checks every name first, and the judge is switched
off by a boolean (``p0_judge_enabled`` / ``judge_enabled``), not by an empty name. Platform
settings (S3 endpoint, MLflow tracking URI) are no parameters: every task mounts the chart's
ConfigMap ``p0_platform_config_map`` / ``platform_config_map`` as env (``kubernetes.use_config_map_as_env``).
"""

# No ``from __future__ import annotations``: KFP reads the pipeline signatures' real annotations.

from typing import Any

from kfp import dsl, kubernetes

from mini_o3.launch.presets import JUDGE_SECRET_KEYS, S3_SECRET_KEYS

from .components import Components, build
from .bodies import HF_TOKEN_KEY, PLATFORM_ENV

TRAIN_NAME = "mini-o3-train"
EVALUATE_NAME = "mini-o3-evaluate"
#: Pod deadlines (``activeDeadlineSeconds``) per kind of task.
TIMEOUTS = {"light": 6 * 3600, "data": 24 * 3600, "sft": 3 * 24 * 3600, "rl": 7 * 24 * 3600, "eval": 2 * 24 * 3600}
SHM_SIZE = "64Gi"
#: CPU / memory (request, limit) of each kind of pod: ResourceQuota namespaces (multi-user Kubeflow
#: profiles) refuse pods without them. Light: bookkeeping and the Ray launchers (they only watch a
#: RayJob); data: preparation (image decoding in parallel) and CPU evaluation; gpu: SFT / RL / vLLM pods.
POD_RESOURCES = {
    "light": {"cpu": ("500m", "2"), "memory": ("1Gi", "4Gi")},
    "data": {"cpu": ("2", "8"), "memory": ("8Gi", "32Gi")},
    "gpu": {"cpu": ("8", "32"), "memory": ("64Gi", "256Gi")},
}
SIZE_OF = {"light": "light", "data": "data", "sft": "light", "rl": "light", "eval": "data"}
DEFAULT_EVAL_BENCHMARKS = "visualprobe_hard,visualprobe_medium,visualprobe_easy,vstar"
#: The ConfigMap of platform settings (``bodies.PLATFORM_ENV``) the Helm chart writes (``platform.configMapName``).
PLATFORM_CONFIG_MAP = "mini-o3-platform"


def _size(task: Any, size: str) -> Any:
    cpu, memory = POD_RESOURCES[size]["cpu"], POD_RESOURCES[size]["memory"]
    task.set_cpu_request(cpu[0]).set_cpu_limit(cpu[1]).set_memory_request(memory[0]).set_memory_limit(memory[1])
    return task


def _common(task: Any, pod_env: tuple[Any, Any], timeout: str, name: str) -> Any:
    """Every task: ``pod_env`` = (S3 Secret, platform ConfigMap) as env (the ConfigMap optionally:
    without it, AWS's default endpoint and no tracking), no caching, a deadline, CPU / memory
    requests and limits, a display name."""
    s3_secret, platform = pod_env
    _size(task, SIZE_OF[timeout])
    kubernetes.use_secret_as_env(task, s3_secret, {k: k for k in S3_SECRET_KEYS})
    kubernetes.use_config_map_as_env(task, platform, {k: k for k in PLATFORM_ENV}, optional=True)
    kubernetes.set_timeout(task, TIMEOUTS[timeout])
    task.set_caching_options(False)
    task.set_display_name(name)
    return task


def _gpu(task: Any, gpu_type: Any, count: Any, node_selector: Any, tolerations: Any) -> Any:
    """A GPU pod: accelerator type and count, GPU-pod CPU / memory, the GPU pool's node selector and
    tolerations, /dev/shm."""
    _size(task, "gpu")
    task.set_accelerator_type(gpu_type).set_accelerator_limit(count)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE)
    return task


def _judge(task: Any, judge_secret: Any) -> Any:
    kubernetes.use_secret_as_env(task, judge_secret, {k: k for k in JUDGE_SECRET_KEYS}, optional=True)
    return task


def _hf(task: Any, hf_secret: Any) -> Any:
    kubernetes.use_secret_as_env(task, hf_secret, {HF_TOKEN_KEY: HF_TOKEN_KEY}, optional=True)
    return task


def _paper_k(func: Any) -> Any:
    """Fill the docstring's ``<paper k>`` from the benchmarks' ``BenchSpec.default_k`` (one home)."""
    from mini_o3.data.bench.registry import paper_k_text

    func.__doc__ = func.__doc__.replace("<paper k>", paper_k_text())
    return func


def build_train(c: Components | None = None) -> Any:
    """The ``mini-o3-train`` pipeline built on ``c`` (default: ``components.build()``)."""
    c = c or build()

    # List / dict defaults are safe: KFP copies them into the spec and never mutates them.
    @dsl.pipeline(name=TRAIN_NAME)
    @_paper_k
    def mini_o3_train(
        p0_storage_root: str = "s3://mini-o3/runs",
        p0_experiment: str = "mini-o3",
        p0_platform_config_map: str = PLATFORM_CONFIG_MAP,
        p0_s3_secret_name: str = "mini-o3-s3",
        p0_judge_secret_name: str = "mini-o3-judge",
        p0_judge_enabled: bool = True,
        p0_hf_token_secret_name: str = "mini-o3-hf-token",
        p0_gpu_type: str = "nvidia.com/gpu",
        p0_gpu_node_selector: dict = {},  # noqa: B006
        p0_gpu_tolerations: list = [],  # noqa: B006
        p0_work_volume_claim: str = "",
        p0_ray_service_account: str = "mini-o3",
        p1_data_coldstart_source: str = "Mini-o3/Mini-o3-Coldstart-Dataset",
        p1_data_coldstart_uri: str = "",
        p1_data_rl_benchmarks: str = "visualprobe_train,deepeyes_train_4k",
        p1_data_rl_uri: str = "",
        p1_data_eval_benchmarks: str = DEFAULT_EVAL_BENCHMARKS,
        p1_data_eval_uri: str = "",
        p1_data_coldstart_overrides: list = [],  # noqa: B006
        p1_data_bench_overrides: list = [],  # noqa: B006
        p1_data_synthetic: list = [],  # noqa: B006
        p2_sft_base_model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        p2_sft_model_uri: str = "",
        p2_sft_overrides: list = [],  # noqa: B006
        p2_sft_launch_mode: str = "inprocess",
        p2_sft_gpus: str = "8",
        p2_sft_workers: int = 1,
        p2_sft_ray_address: str = "",
        p2_sft_launch_overrides: list = [],  # noqa: B006
        p3_rl_engine: str = "verl",
        p3_rl_model_uri: str = "",
        p3_rl_overrides: list = [],  # noqa: B006
        p3_rl_launch_mode: str = "rayjob",
        p3_rl_workers: int = 8,
        p3_rl_gpus_per_worker: str = "8",
        p3_rl_ray_address: str = "",
        p3_rl_launch_overrides: list = [],  # noqa: B006
        p4_eval_k: int = 0,
        p4_eval_backend: str = "vllm",
        p4_eval_gpus: str = "1",
        p4_eval_overrides: list = [],  # noqa: B006
        p4_eval_compare: bool = False,
        p5_register_model: str = "mini-o3",
        p5_register_alias: str = "candidate",
        p5_register_sft: bool = False,
    ):
        """Mini-o3 training: cold-start data → LLaMA-Factory SFT → GRPO RL → Avg@k evaluation → report.

        Parameters are grouped by phase (p0 run-wide, p1 data, p2 SFT, p3 RL, p4 evaluation). Any
        stage is skipped by giving its ``*_uri`` (a sealed artifact; models may also be hf://org/name).

        Args:
            p0_storage_root: Object-storage prefix of all run artifacts (s3://bucket/prefix; a local folder in embedded runs); each run writes under <root>/<KFP run id>/.
            p0_experiment: MLflow experiment of the parent run.
            p0_platform_config_map: ConfigMap with the platform settings every task gets as env (MINI_O3_S3_ENDPOINT: the S3 endpoint URL, empty or missing: AWS default; MLFLOW_TRACKING_URI: the MLflow server, missing: tracking off, none: off), written by the Helm chart; optional.
            p0_s3_secret_name: Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (mounted as env on every task).
            p0_judge_secret_name: Secret with the LLM judge endpoint and key (END_POINT, API_KEY, API_VERSION or OPENAI_BASE_URL, OPENAI_API_KEY), mounted optionally; never empty (the KFP driver refuses an empty Secret name): to score with rules only set p0_judge_enabled=false.
            p0_judge_enabled: LLM judge for RL rewards and evaluation (the paper's protocol); false: rule scorers only (evaluation protocol "rule", RL judge.enabled=false).
            p0_hf_token_secret_name: Secret with HF_TOKEN for gated hub downloads; optional.
            p0_gpu_type: Accelerator resource of GPU pods (nvidia.com/gpu).
            p0_gpu_node_selector: nodeSelector of GPU pods and RayJob workers (JSON object).
            p0_gpu_tolerations: Tolerations of GPU pods and RayJob workers (JSON list).
            p0_work_volume_claim: ReadWriteMany PVC (same namespace) that every pod of an SFT / RL RayJob mounts for the stage's work folder (model, data, checkpoints at the same paths on all pods); required when a RayJob has worker pods (the Helm chart's sharedVolume creates one); empty: only head-only RayJobs (reference engine, workers=0).
            p0_ray_service_account: ServiceAccount of the RayJob pods (the Helm chart's account; `helm install mini-o3` names it mini-o3); empty: the namespace's default account.
            p1_data_coldstart_source: Cold-start parquet: hub dataset id, mounted folder, or "synthetic".
            p1_data_coldstart_uri: Skip cold-start preparation: URI of a sealed prepared cold-start folder.
            p1_data_rl_benchmarks: RL train sets, comma-separated name[=source] (see `mini-o3 prepare list`; "synthetic" generates).
            p1_data_rl_uri: Skip RL data preparation: URI of a sealed benchmark collection with train.parquet.
            p1_data_eval_benchmarks: Evaluation (and RL validation) benchmarks, comma-separated name[=source].
            p1_data_eval_uri: Skip evaluation data preparation: URI of a sealed benchmark collection with val.parquet.
            p1_data_coldstart_overrides: ColdstartPrepConfig overrides key=value (workers=, max_bad_fraction=, ...).
            p1_data_bench_overrides: BenchPrepConfig overrides key=value for the RL and evaluation sets.
            p1_data_synthetic: SyntheticSpec overrides for "synthetic" sources (n_train=, n_test=, seed=, config.width_range=[512,768]).
            p2_sft_base_model: Base model of SFT: hub id (hf://org/name or org/name) or a sealed model URI.
            p2_sft_model_uri: Skip SFT: the SFT model to start RL from (sealed URI, or hf://Mini-o3/Mini-o3-7B-SFT).
            p2_sft_overrides: SFTConfig overrides key=value (num_train_epochs=1, learning_rate=1e-5, ...).
            p2_sft_launch_mode: inprocess (one GPU pod with p2_sft_gpus GPUs), ray (existing Ray cluster) or rayjob (KubeRay).
            p2_sft_gpus: GPUs of the SFT pod (inprocess) or per Ray worker (ray / rayjob); a whole number as a string (KFP turns a pod resource parameter into a limit only when it is a string).
            p2_sft_workers: Ray worker pods of a rayjob SFT.
            p2_sft_ray_address: Ray Jobs API URL for launch mode ray (http://head-svc:8265).
            p2_sft_launch_overrides: LaunchSettings overrides key=value (memory_per_worker=..., shm_size=...).
            p3_rl_engine: verl (GPU cluster) or local (reference engine: CPU / one GPU).
            p3_rl_model_uri: Skip RL: the policy to evaluate (sealed URI or hub id).
            p3_rl_overrides: RLConfig overrides key=value (total_training_steps=, rollout_n=, judge.enabled=false, ...).
            p3_rl_launch_mode: rayjob (KubeRay RayJob from a CPU launcher pod), ray (existing cluster) or inprocess (GPU pod).
            p3_rl_workers: RayJob GPU worker pods (verl nnodes; seed: 8 nodes x 8 GPUs).
            p3_rl_gpus_per_worker: GPUs per worker (verl n_gpus_per_node); also the GPUs of an inprocess RL pod; a whole number as a string.
            p3_rl_ray_address: Ray Jobs API URL for launch mode ray.
            p3_rl_launch_overrides: LaunchSettings overrides key=value for the RayJob (memory_per_worker=, namespace=, ...).
            p4_eval_k: Samples per question; 0: the paper's k per benchmark (<paper k>).
            p4_eval_backend: vllm (serve the model on a GPU pod) or local (HF policy on CPU: smoke tests).
            p4_eval_gpus: GPUs of the vLLM evaluation pod; a whole number as a string.
            p4_eval_overrides: EvalConfig overrides key=value (max_turns=32, limit=50, ...).
            p4_eval_compare: Also evaluate the base and SFT models on the same questions; the report then opens with the learning table (base → SFT → RL, Avg@k with 95% CIs, paired RL − SFT delta).
            p5_register_model: MLflow Model Registry name the final RL model is registered under as a new version (source: its sealed URI; tags: run, data digests, config hashes), after its evaluation; empty: not registered. Schedule mini-o3-evaluate on models:/<name>@<alias>.
            p5_register_alias: Alias moved to the new version (MLflow alias: letters, digits, _ and -).
            p5_register_sft: Also register the SFT model, as <name>-sft with the same alias.
        """
        s3 = (p0_s3_secret_name, p0_platform_config_map)  # every task: S3 credentials + platform env
        init = _common(c.init_run(
            storage_root=p0_storage_root, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, pipeline=TRAIN_NAME,
            experiment=p0_experiment,
            params=({
                "data_coldstart": f"{p1_data_coldstart_source}|{p1_data_coldstart_uri}",
                "data_rl": f"{p1_data_rl_benchmarks}|{p1_data_rl_uri}",
                "data_eval": f"{p1_data_eval_benchmarks}|{p1_data_eval_uri}",
                "sft": f"{p2_sft_base_model}|{p2_sft_model_uri}|{p2_sft_launch_mode}",
                "rl": f"{p3_rl_engine}|{p3_rl_model_uri}|{p3_rl_launch_mode}",
                "eval": f"{p4_eval_backend}|k={p4_eval_k}",
            }),
            work_volume_claim=p0_work_volume_claim,
            sft_skip_uri=p2_sft_model_uri, sft_launch_mode=p2_sft_launch_mode, sft_workers=p2_sft_workers,
            sft_launch_overrides=p2_sft_launch_overrides, rl_skip_uri=p3_rl_model_uri,
            rl_launch_mode=p3_rl_launch_mode, rl_workers=p3_rl_workers, rl_launch_overrides=p3_rl_launch_overrides,
            gpu_counts={"p2_sft_gpus": p2_sft_gpus, "p3_rl_gpus_per_worker": p3_rl_gpus_per_worker,
                        "p4_eval_gpus": p4_eval_gpus},
            secret_names={"p0_s3_secret_name": p0_s3_secret_name, "p0_judge_secret_name": p0_judge_secret_name,
                          "p0_hf_token_secret_name": p0_hf_token_secret_name}),
            s3, "light", "init run (MLflow parent)")
        run = dict(parent_run_id=init.outputs["parent_run_id"])
        root = init.outputs["run_root"]
        finish = _common(c.finish_run(storage_root=p0_storage_root, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                      pipeline=TRAIN_NAME, experiment=p0_experiment),
                         s3, "light", "finish run (MLflow status)")

        with dsl.ExitHandler(finish, name="mini-o3-train-stages"):
            # 1. data
            with dsl.If(p1_data_coldstart_uri == "", name="prepare-coldstart"):
                cold_new = _hf(_common(c.prepare_coldstart(
                    source=p1_data_coldstart_source, run_root=root, overrides=p1_data_coldstart_overrides,
                    synthetic=p1_data_synthetic, **run), s3, "data", "1 data: cold-start"), p0_hf_token_secret_name)
            with dsl.Else(name="use-coldstart"):
                cold_old = _common(c.use_artifact(uri=p1_data_coldstart_uri, kind="cold-start data"), s3, "light", "1 data: given cold-start")
            coldstart = dsl.OneOf(cold_new.output, cold_old.output)

            with dsl.If(p1_data_rl_uri == "", name="prepare-rl-data"):
                rl_new = _hf(_common(c.prepare_bench(
                    benchmarks=p1_data_rl_benchmarks, name="rl_data", run_root=root, overrides=p1_data_bench_overrides,
                    synthetic=p1_data_synthetic, **run), s3, "data", "1 data: RL sets"), p0_hf_token_secret_name)
            with dsl.Else(name="use-rl-data"):
                rl_old = _common(c.use_artifact(uri=p1_data_rl_uri, kind="RL data"),
                                 s3, "light", "1 data: given RL sets")
            rl_data = dsl.OneOf(rl_new.output, rl_old.output)

            with dsl.If(p1_data_eval_uri == "", name="prepare-eval-data"):
                ev_new = _hf(_common(c.prepare_bench(
                    benchmarks=p1_data_eval_benchmarks, name="eval_data", run_root=root, overrides=p1_data_bench_overrides,
                    synthetic=p1_data_synthetic, **run), s3, "data", "1 data: benchmarks"), p0_hf_token_secret_name)
            with dsl.Else(name="use-eval-data"):
                ev_old = _common(c.use_artifact(uri=p1_data_eval_uri, kind="benchmark data"),
                                 s3, "light", "1 data: given benchmarks")
            eval_data = dsl.OneOf(ev_new.output, ev_old.output)

            # 2. SFT
            sft_args = dict(data=coldstart, base_model=p2_sft_base_model, run_root=root, overrides=p2_sft_overrides,
                            launch_mode=p2_sft_launch_mode, ray_address=p2_sft_ray_address, workers=p2_sft_workers,
                            gpus_per_worker=p2_sft_gpus, node_selector=p0_gpu_node_selector,
                            tolerations=p0_gpu_tolerations, launch_overrides=p2_sft_launch_overrides,
                            s3_secret_name=p0_s3_secret_name, hf_token_secret_name=p0_hf_token_secret_name,
                            accelerator=p0_gpu_type, work_volume_claim=p0_work_volume_claim,
                            ray_service_account=p0_ray_service_account, image_registry=c.image_registry,
                            image_tag=c.image_tag, **run)
            with dsl.If(p2_sft_model_uri != "", name="use-sft-model"):
                sft_old = _common(c.use_artifact(uri=p2_sft_model_uri, kind="model"),
                                  s3, "light", "2 SFT: given model")
            with dsl.Elif(p2_sft_launch_mode == "inprocess", name="sft-on-gpu-pod"):
                sft_pod = _hf(_gpu(_common(c.sft(**sft_args), s3, "sft", "2 SFT (GPU pod)"), p0_gpu_type, p2_sft_gpus,
                                   p0_gpu_node_selector, p0_gpu_tolerations), p0_hf_token_secret_name)
            with dsl.Else(name="sft-on-ray"):
                sft_ray = _common(c.sft(**sft_args), s3, "sft", "2 SFT (Ray launcher)")
            sft_model = dsl.OneOf(sft_old.output, sft_pod.outputs["Output"], sft_ray.outputs["Output"])

            # 3. RL
            rl_args = dict(engine=p3_rl_engine, model=sft_model, train=rl_data, val=eval_data, run_root=root,
                           overrides=p3_rl_overrides, launch_mode=p3_rl_launch_mode, ray_address=p3_rl_ray_address,
                           workers=p3_rl_workers, gpus_per_worker=p3_rl_gpus_per_worker,
                           node_selector=p0_gpu_node_selector, tolerations=p0_gpu_tolerations,
                           launch_overrides=p3_rl_launch_overrides, s3_secret_name=p0_s3_secret_name,
                           judge_secret_name=p0_judge_secret_name, judge_enabled=p0_judge_enabled,
                           hf_token_secret_name=p0_hf_token_secret_name,
                           accelerator=p0_gpu_type, work_volume_claim=p0_work_volume_claim,
                           ray_service_account=p0_ray_service_account, image_registry=c.image_registry,
                           image_tag=c.image_tag, **run)
            with dsl.If(p3_rl_model_uri != "", name="use-rl-model"):
                rl_old_model = _common(c.use_artifact(uri=p3_rl_model_uri, kind="model"),
                                       s3, "light", "3 RL: given model")
            with dsl.Elif(p3_rl_launch_mode == "inprocess", name="rl-on-gpu-pod"):
                rl_pod = _judge(_gpu(_common(c.rl(**rl_args), s3, "rl", "3 RL (GPU pod)"), p0_gpu_type,
                                     p3_rl_gpus_per_worker, p0_gpu_node_selector, p0_gpu_tolerations), p0_judge_secret_name)
            with dsl.Else(name="rl-on-ray"):
                rl_ray = _judge(_common(c.rl(**rl_args), s3, "rl", "3 RL (Ray launcher)"), p0_judge_secret_name)
            rl_model = dsl.OneOf(rl_old_model.output, rl_pod.outputs["Output"], rl_ray.outputs["Output"])

            # 4. evaluation + report
            eval_args = dict(bench=eval_data, root=root, k=p4_eval_k, backend=p4_eval_backend,
                             overrides=p4_eval_overrides, gpus=p4_eval_gpus, gpu_type=p0_gpu_type,
                             node_selector=p0_gpu_node_selector, tolerations=p0_gpu_tolerations, s3=s3,
                             judge=p0_judge_secret_name, judge_enabled=p0_judge_enabled, hf=p0_hf_token_secret_name,
                             run=run)
            evaluation = _evaluate(c, model=rl_model, name="eval", **eval_args)
            _common(c.register_model(rl=rl_model, sft=sft_model, evaluation=evaluation,
                                     name=p5_register_model, alias=p5_register_alias, register_sft=p5_register_sft,
                                     coldstart=coldstart, rl_data=rl_data, eval_data=eval_data,
                                     run_root=root, **run), s3, "light", "5 register model (MLflow)")
            report_args = dict(evaluation=evaluation, run_root=root, base_model=p2_sft_base_model, sft=sft_model,
                               rl=rl_model, title="Mini-o3 training run", **run)
            with dsl.If(p4_eval_compare == False, name="report-rl-model"):  # noqa: E712 (a DSL condition)
                _common(c.report(**report_args, base_eval={}, sft_eval={}), s3, "light", "5 report")
            with dsl.Else(name="compare-with-base-and-sft"):
                base = _common(c.use_artifact(uri=p2_sft_base_model, kind="model"), s3, "light", "4 base model")
                base_eval = _evaluate(c, model=base.output, name="eval_base", **eval_args)
                sft_eval = _evaluate(c, model=sft_model, name="eval_sft", **eval_args)
                _common(c.report(**report_args, base_eval=base_eval, sft_eval=sft_eval), s3, "light",
                        "5 report (learning table)")

    return mini_o3_train


def _evaluate(c: Components, *, model: Any, bench: Any, root: Any, k: Any, backend: Any, overrides: Any,
              gpus: Any, gpu_type: Any, node_selector: Any, tolerations: Any, s3: Any, judge: Any,
              judge_enabled: Any, hf: Any, run: dict, name: str = "eval", reuse: Any = None) -> Any:
    """Evaluation on a CPU pod (backend local) or a GPU pod (vllm) into ``<run_root>/<name>``;
    returns the channel of its stage result. ``reuse`` (the plan task's ``reuse_eval_uri``): when it is set no
    evaluation task runs (no GPU pod); a light task checks that evaluation is still sealed instead."""
    args = dict(model=model, bench=bench, run_root=root, out_name=name, k=k, backend=backend,
                overrides=overrides,
                judge_secret_name=judge, judge_enabled=judge_enabled, accelerator=gpu_type, gpus=gpus, **run)
    if reuse is not None:
        with dsl.If(reuse != "", name="unchanged-reuse-evaluation"):
            old = _common(c.use_artifact(uri=reuse, kind="earlier evaluation"),
                          s3, "light", "4 unchanged: earlier evaluation")
        with dsl.Elif(backend == "local", name="evaluate-on-cpu"):
            cpu = _hf(_judge(_common(c.evaluate(**args), s3, "eval", f"4 {name} (local HF policy)"), judge), hf)
        with dsl.Else(name="evaluate-on-gpu"):
            gpu = _hf(_judge(_gpu(_common(c.evaluate(**args), s3, "eval", f"4 {name} (vLLM)"), gpu_type, gpus,
                                  node_selector, tolerations), judge), hf)
        return dsl.OneOf(old.output, cpu.outputs["Output"], gpu.outputs["Output"])
    with dsl.If(backend == "local", name="evaluate-on-cpu"):
        cpu = _hf(_judge(_common(c.evaluate(**args), s3, "eval", f"4 {name} (local HF policy)"), judge), hf)
    with dsl.Else(name="evaluate-on-gpu"):
        gpu = _hf(_judge(_gpu(_common(c.evaluate(**args), s3, "eval", f"4 {name} (vLLM)"), gpu_type, gpus,
                              node_selector, tolerations), judge), hf)
    return dsl.OneOf(cpu.outputs["Output"], gpu.outputs["Output"])


def build_evaluate(c: Components | None = None) -> Any:
    """The ``mini-o3-evaluate`` pipeline built on ``c`` (default: ``components.build()``)."""
    c = c or build()

    @dsl.pipeline(name=EVALUATE_NAME)
    @_paper_k
    def mini_o3_evaluate(  # list / dict defaults: see build_train
        model_uri: str = "",
        benchmarks: str = DEFAULT_EVAL_BENCHMARKS,
        k: int = 0,
        storage_root: str = "s3://mini-o3/runs",
        judge_secret_name: str = "mini-o3-judge",
        judge_enabled: bool = True,
        s3_secret_name: str = "mini-o3-s3",
        experiment: str = "mini-o3-eval",
        platform_config_map: str = PLATFORM_CONFIG_MAP,
        bench_uri: str = "",
        bench_overrides: list = [],  # noqa: B006
        synthetic: list = [],  # noqa: B006
        backend: str = "vllm",
        eval_overrides: list = [],  # noqa: B006
        gpus: str = "1",
        gpu_type: str = "nvidia.com/gpu",
        gpu_node_selector: dict = {},  # noqa: B006
        gpu_tolerations: list = [],  # noqa: B006
        hf_token_secret_name: str = "mini-o3-hf-token",
        force: bool = False,
        promote_if_better: bool = False,
        trend_runs: int = 10,
    ):
        """Mini-o3 evaluation: Avg@k of one model on prepared benchmarks, with a report. Schedule it as a recurring run.

        Follow a model with model_uri models:/NAME@ALIAS: each run resolves it, evaluates only when the
        model, benchmarks or eval config changed since the target's last finished run, logs Avg@k per
        benchmark to the MLflow experiment mini-o3-history/<target> and reports the trend and paired
        comparisons with the previous run and the champion version.

        Args:
            model_uri: The model: models:/NAME@ALIAS or models:/NAME/VERSION (MLflow Model Registry, resolved when the run starts), a sealed artifact URI (e.g. s3://mini-o3/runs/<run>/rl/model) or a hub id (hf://Mini-o3/Mini-o3-7B-v1); may be empty with backend openai:URL.
            benchmarks: Comma-separated name[=source] (visualprobe_hard, vstar, hrbench_4k, mme_realworld, synthetic, ...).
            k: Samples per question; 0: the paper's k per benchmark (<paper k>).
            storage_root: Object-storage prefix of run artifacts (s3://bucket/prefix); each run writes under <root>/<KFP run id>/.
            judge_secret_name: Secret with the LLM judge endpoint and key (END_POINT, API_KEY, API_VERSION or OPENAI_BASE_URL, OPENAI_API_KEY), mounted optionally; never empty (the KFP driver refuses an empty Secret name): to score with rules only set judge_enabled=false.
            judge_enabled: LLM judge for free-form answers (the paper's protocol); false: rule scorers only (evaluation protocol "rule").
            s3_secret_name: Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
            experiment: MLflow experiment of the parent run.
            platform_config_map: ConfigMap with the platform settings every task gets as env (MINI_O3_S3_ENDPOINT, MLFLOW_TRACKING_URI), written by the Helm chart; optional.
            bench_uri: Skip benchmark preparation: URI of a sealed benchmark collection (val.parquet per benchmark).
            bench_overrides: BenchPrepConfig overrides key=value.
            synthetic: SyntheticSpec overrides for a "synthetic" benchmark (n_test=, seed=, ...).
            backend: vllm (GPU pod serving the model) or local (HF policy on CPU: smoke tests).
            eval_overrides: EvalConfig overrides key=value (max_turns=32, limit=50, temperature=...).
            gpus: GPUs of the vLLM evaluation pod; a whole number as a string (KFP turns a pod resource parameter into a limit only when it is a string).
            gpu_type: Accelerator resource (nvidia.com/gpu).
            gpu_node_selector: nodeSelector of the GPU pod (JSON object).
            gpu_tolerations: Tolerations of the GPU pod (JSON list).
            hf_token_secret_name: Secret with HF_TOKEN for gated hub downloads; optional.
            force: Evaluate even when the model digest, benchmark digests and eval-config hash equal those of a finished earlier run (else that run's result is reused and no evaluation pod starts).
            promote_if_better: After the evaluation, move the champion alias to the evaluated models:/NAME@ALIAS version when it beats the champion on every benchmark with a paired 95% CI excluding 0 (the reason goes into the version's tags).
            trend_runs: Runs of the same target shown in the report's trend table and plot.
        """
        pod_env = (s3_secret_name, platform_config_map)  # every task: S3 credentials + platform env
        init = _common(c.init_run(
            storage_root=storage_root, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, pipeline=EVALUATE_NAME,
            experiment=experiment,
            params=({"model_uri": model_uri, "benchmarks": benchmarks, "k": f"{k}",
                                      "backend": backend, "bench_uri": bench_uri, "force": f"{force}"}),
            gpu_counts={"gpus": gpus},
            secret_names={"s3_secret_name": s3_secret_name, "judge_secret_name": judge_secret_name,
                          "hf_token_secret_name": hf_token_secret_name}),
            pod_env, "light", "init run (MLflow parent)")
        run = dict(parent_run_id=init.outputs["parent_run_id"])
        root = init.outputs["run_root"]
        finish = _common(c.finish_run(storage_root=storage_root, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                      pipeline=EVALUATE_NAME, experiment=experiment),
                         pod_env, "light", "finish run (MLflow status)")
        with dsl.ExitHandler(finish, name="mini-o3-evaluate-stages"):
            resolved = _hf(_common(c.resolve_model(model_ref=model_uri, backend=backend, run_root=root),
                                   pod_env, "light", "resolve model"), hf_token_secret_name)
            model = resolved.outputs["model"]
            with dsl.If(bench_uri == "", name="prepare-benchmarks"):
                new = _hf(_common(c.prepare_bench(benchmarks=benchmarks, name="eval_data", run_root=root,
                                                  overrides=bench_overrides, synthetic=synthetic, **run),
                                  pod_env, "data", "1 data: benchmarks"), hf_token_secret_name)
            with dsl.Else(name="use-benchmarks"):
                old = _common(c.use_artifact(uri=bench_uri, kind="benchmark data"),
                              pod_env, "light", "1 data: given benchmarks")
            bench = dsl.OneOf(new.output, old.output)
            plan = _judge(_common(c.plan_eval(
                model_info=resolved.outputs["model_info"], bench=bench, backend=backend, k=k,
                overrides=eval_overrides, judge_secret_name=judge_secret_name, judge_enabled=judge_enabled,
                force=force, trend_runs=trend_runs, run_root=root), pod_env, "light", "plan (unchanged since?)"), judge_secret_name)
            evaluation = _evaluate(c, model=model, bench=bench, root=root, k=k, backend=backend,
                                   overrides=eval_overrides, gpus=gpus, gpu_type=gpu_type,
                                   node_selector=gpu_node_selector, tolerations=gpu_tolerations, s3=pod_env,
                                   judge=judge_secret_name, judge_enabled=judge_enabled, hf=hf_token_secret_name, run=run,
                                   reuse=plan.outputs["reuse_eval_uri"])
            _common(c.report(evaluation=evaluation, run_root=root, base_model="", sft={}, base_eval={},
                             sft_eval={}, rl=model, title="Mini-o3 evaluation",
                             history=plan.outputs["history"], promote_if_better=promote_if_better, **run),
                    pod_env, "light", "2 report")

    return mini_o3_evaluate
