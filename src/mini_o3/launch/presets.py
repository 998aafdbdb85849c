"""Entrypoints and settings for the stages that run remotely (requirement 4), and the env they need.

* the reference GRPO engine (``mini-o3 rl --engine local``) as a RayJob on a head-only CPU cluster:
  its driver does all the work, so a cluster smoke run needs no GPU;
* LLaMA-Factory SFT in its Ray mode (``launch.mode=ray``, ``ray_init_kwargs.address=auto``), whose
  workers take one ``{GPU: 1, CPU: 10}`` bundle each;
* verl's worker pods: verl 0.9.1 reserves one ``{CPU: max_colocate_count = 3, GPU: 1}`` bundle per GPU,
  STRICT_PACK per node, and checks only GPUs before it waits on the placement group; KubeRay gives
  Ray the container's CPU limit as ``--num-cpus``, so the CPU limit must cover the bundles and more;
* the env a remote stage needs: S3 credentials and the judge keys by Secret reference, plus the plain
  storage / tracking variables of the launcher's own environment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .settings import LaunchSettings, SecretRef

S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: Azure OpenAI (END_POINT, API_KEY, API_VERSION) or OpenAI-compatible (OPENAI_BASE_URL, OPENAI_API_KEY).
JUDGE_SECRET_KEYS = ("END_POINT", "API_KEY", "API_VERSION", "OPENAI_BASE_URL", "OPENAI_API_KEY")
#: Plain (non-secret) variables a remote stage inherits from the launcher when set.
FORWARDED_ENV = ("MINI_O3_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION",
                 "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "HF_HUB_OFFLINE", "HF_ENDPOINT")
#: LLaMA-Factory 0.9.5 places each Ray training worker on {GPU: 1, CPU: 10}.
SFT_CPUS_PER_GPU = 10


def s3_secret_env(secret_name: str) -> dict[str, SecretRef]:
    """``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` from the S3 Secret (keys of the same names)."""
    return {key: SecretRef(name=secret_name, key=key) for key in S3_SECRET_KEYS}


def judge_secret_env(secret_name: str) -> dict[str, SecretRef]:
    """The judge keys from the judge Secret; each optional (a Secret holds the Azure or the OpenAI set)."""
    return {key: SecretRef(name=secret_name, key=key, optional=True) for key in JUDGE_SECRET_KEYS}


def forwarded_env(names: Iterable[str] = FORWARDED_ENV, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``names`` set in ``environ`` (default: this process)."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in names if environ.get(name)}


def reference_engine_entrypoint(model: str, train: Sequence[str | Path], val: Sequence[str | Path], out: str | Path,
                                overrides: Sequence[str] = ()) -> list[str]:
    """``mini-o3 rl --engine local --model M --train T... --val V... --out O --set K=V...``."""
    if not train:
        raise ValueError("reference_engine_entrypoint: at least one --train source is required")
    argv = ["mini-o3", "rl", "--engine", "local", "--model", str(model)]
    for path in train:
        argv += ["--train", str(path)]
    for path in val:
        argv += ["--val", str(path)]
    argv += ["--out", str(out)]
    for item in overrides:
        argv += ["--set", item]
    return argv


def reference_engine_settings(**fields: Any) -> LaunchSettings:
    """A RayJob of one CPU head pod (no worker pods, no GPU) sized for the reference engine."""
    base: dict[str, Any] = {"mode": "rayjob", "workers": 0, "gpus_per_worker": 0, "head_cpus": "8",
                            "head_memory": "32Gi", "shm_size": "8Gi"}
    return LaunchSettings(**{**base, **fields})


def sft_ray_entrypoint(data: str | Path, model: str, out: str | Path, overrides: Sequence[str] = (), *,
                       num_workers: int = 1) -> list[str]:
    """``mini-o3 sft`` in LLaMA-Factory's Ray mode on the cluster the driver runs in."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    argv = ["mini-o3", "sft", "--data", str(data), "--model", str(model), "--out", str(out),
            "--set", "launch.mode=ray", "--set", "launch.ray_init_kwargs.address=auto",
            "--set", f"launch.ray_num_workers={num_workers}"]
    for item in overrides:
        argv += ["--set", item]
    return argv


#: verl 0.9.1 ``ResourcePoolManager.max_colocate_count`` (single_controller/ray/base.py): the CPUs of
#: each GPU's placement-group bundle.
VERL_BUNDLE_CPUS = 3
#: CPUs per GPU beyond the bundle: the GPU's vLLM server actor (hard node affinity, outside the
#: placement group: Ray needs a free CPU to schedule it) and the busy vLLM engine process it starts.
VERL_SERVER_CPUS = 1
#: Per worker pod: the Ray node's own processes, agent-loop / reward-loop workers (spread over all
#: nodes: crop tool, reward) and data-loading threads.
VERL_POD_CPUS = 4


def verl_cpus_per_worker(gpus: int) -> str:
    """CPUs (request = limit = Ray ``--num-cpus``) of a verl worker pod with ``gpus`` GPUs: verl's
    ``{CPU: 3, GPU: 1}`` bundle and a vLLM server per GPU, plus the pod's share of the rest."""
    return str((VERL_BUNDLE_CPUS + VERL_SERVER_CPUS) * gpus + VERL_POD_CPUS)


def sft_cpus_per_worker(gpus: int) -> str:
    """CPUs of a worker pod with ``gpus`` GPUs for LLaMA-Factory's Ray mode: its placement group
    reserves {GPU: 1, CPU: 10} per GPU of the cluster, plus 2 for the Ray processes themselves."""
    return str(SFT_CPUS_PER_GPU * gpus + 2)


def sft_ray_settings(num_workers: int, *, gpus_per_worker: int = 8, **fields: Any) -> LaunchSettings:
    """Worker pods for ``num_workers`` LLaMA-Factory Ray workers (one GPU + 10 CPUs each)."""
    if num_workers < 1 or gpus_per_worker < 1:
        raise ValueError("SFT in Ray mode needs GPUs: num_workers and gpus_per_worker must be >= 1")
    per_pod = min(gpus_per_worker, num_workers)
    base: dict[str, Any] = {"mode": "rayjob", "workers": math.ceil(num_workers / per_pod), "gpus_per_worker": per_pod,
                            "cpus_per_worker": sft_cpus_per_worker(per_pod)}
    return LaunchSettings(**{**base, **fields})
