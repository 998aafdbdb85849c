"""Launchers: run a stage's heavy work on Ray (Jobs API, mode ``ray``) or KubeRay (RayJob, mode ``rayjob``).

``run_remote(entrypoint, settings, name=job_name(prefix, run_id))`` is the one call; both modes
stream or fetch the job's logs, succeed only on the remote success status, raise
:class:`LaunchError` with the reason and the last log lines otherwise, and stop / delete the remote
job on SIGTERM and Ctrl-C. Modules: ``settings`` (LaunchSettings, names), ``ray_jobs`` (Jobs API),
``rayjob`` (manifest builder + validation), ``crd_schema`` (CRD → JSON Schema), ``kuberay``
(RayJob launcher + success rule), ``signals``, ``rbac``, ``presets`` (Secret env, worker-pod CPUs
per GPU).
"""

from .kuberay import Decision, RayJobLauncher, decide, rayjob_manifest, run_rayjob
from .presets import judge_secret_env, s3_secret_env
from .rayjob import (
    RayJobValidationError,
    build_rayjob,
    shared_work_problem,
    validate_rayjob,
)
from .rbac import RBAC_RULES
from .remote import run_remote
from .settings import LaunchError, LaunchSettings, RemoteResult, SecretRef, job_name
from .signals import Terminated, sigterm_raises

__all__ = [
    "RBAC_RULES",
    "Decision",
    "LaunchError",
    "LaunchSettings",
    "RayJobLauncher",
    "RayJobValidationError",
    "RemoteResult",
    "SecretRef",
    "Terminated",
    "build_rayjob",
    "decide",
    "job_name",
    "judge_secret_env",
    "rayjob_manifest",
    "run_rayjob",
    "run_remote",
    "s3_secret_env",
    "shared_work_problem",
    "sigterm_raises",
    "validate_rayjob",
]
