"""``run_remote``: one call for both remote modes (the KFP components and the stage CLI use it)."""

from __future__ import annotations

from collections.abc import Callable

from .settings import LaunchSettings, RemoteResult


def run_remote(entrypoint: list[str], settings: LaunchSettings, *, name: str, runtime_env: dict | None = None,
               echo: Callable[[str], None] = print) -> RemoteResult:
    """Run ``entrypoint`` (argv) remotely and wait for it; :class:`LaunchError` unless it succeeded.

    ``settings.mode``: ``ray`` → Ray Jobs API on an existing cluster; ``rayjob`` → a KubeRay RayJob
    through the Kubernetes API (in-cluster config, else kubeconfig). Both stop / delete the remote
    job on SIGTERM and Ctrl-C and re-raise. ``inprocess`` is a ValueError: the caller runs the work.
    ``name`` is the Ray submission id / RayJob name (use :func:`job_name`); a retried launcher with
    the same name adopts the running job.
    """
    if not entrypoint or not all(isinstance(arg, str) for arg in entrypoint):
        raise ValueError(f"entrypoint must be a non-empty list of strings, got {entrypoint!r}")
    if settings.mode == "ray":
        from .ray_jobs import run_ray_job

        return run_ray_job(entrypoint, settings, name=name, runtime_env=runtime_env, echo=echo)
    if settings.mode == "rayjob":
        from .kuberay import run_rayjob

        return run_rayjob(entrypoint, settings, name=name, runtime_env=runtime_env, echo=echo)
    raise ValueError(f"launch.mode={settings.mode!r} runs in the calling process; run_remote needs mode ray or rayjob")
