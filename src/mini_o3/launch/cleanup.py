"""Cancel never leaks a RayJob: delete the live RayJobs of a pipeline run from its exit handler.

The launcher's own SIGTERM → DELETE (:mod:`.kuberay`) is a race on a cancelled KFP run: KFP
terminates a run by setting the Argo workflow's ``activeDeadlineSeconds`` to 0 (kubeflow/pipelines
2.17.0 backend/src/apiserver/resource/resource_manager.go ``TerminateWorkflow``), Argo then SIGTERMs
the running pods and SIGKILLs them after the grace period (argo-workflows v4.0.5
workflow/controller/pod/queue.go), and a launcher that is still creating its RayJob, or is killed
before its DELETE lands, leaves a 64-GPU cluster behind; the RayJob's ownerReference to the pod only
fires when the pod is deleted, and KFP keeps finished workflows' pods for days.

The exit handler does not race: KFP compiles ``dsl.ExitHandler`` to an Argo exit lifecycle hook
(backend/src/v2/compiler/argocompiler/common.go ``addExitTask``), and Argo starts exit-hook pods
even after the workflow deadline passed and never terminates them for it (workflowpod.go: "ignore
the workflow deadline for exit handler"; exec_control.go). Every launcher labels its RayJob with the
run id (:data:`RUN_ID_LABEL`); :func:`cleanup_run` lists that label and deletes every RayJob that
:func:`mini_o3.launch.decide` does not call done (new, initializing, running, suspended, retrying).
Finished ones stay: their Ray cluster is already shut down (``shutdownAfterJobFinishes``) and a
failed one is kept for ``kubectl describe``. After a failed or cancelled run it keeps listing for
``settle_s`` after the last live RayJob it saw, so a launcher that created one during its grace
period is caught too. ``activeDeadlineSeconds`` on every RayJob bounds the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .kuberay import _api_exception, _obj, decide, describe
from .rayjob import GROUP, PLURAL, VERSION, label_value, pod_namespace

#: Label of every RayJob a KFP launcher creates: the KFP run id it belongs to.
RUN_ID_LABEL = "mini-o3/kfp-run-id"
#: After a failed / cancelled run: keep looking this long after the last live RayJob (a launcher's
#: SIGKILL comes after the pod's terminationGracePeriodSeconds, 30 s by default).
SETTLE_S = 60.0
POLL_S = 10.0
#: Never spend longer than this (a launcher that keeps re-creating would otherwise hold the handler).
MAX_S = 600.0


def run_labels(run_id: str) -> dict[str, str]:
    """The labels that tie a RayJob to KFP run ``run_id``."""
    value = label_value(run_id)
    if not value:
        raise ValueError(f"run id {run_id!r} gives no label value")
    return {RUN_ID_LABEL: value}


def live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The RayJobs among ``items`` to delete: not done by :func:`decide` and not already being deleted."""
    return [item for item in items
            if not decide(item.get("status")).done and not (item.get("metadata") or {}).get("deletionTimestamp")]


@dataclass
class CleanupReport:
    """What :func:`cleanup_run` did: RayJobs deleted, finished ones left, list calls made."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    lists: int = 0


def cleanup_run(custom_api: Any, namespace: str, run_id: str, *, settle: bool, settle_s: float = SETTLE_S,
                poll_s: float = POLL_S, max_s: float = MAX_S, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep, echo: Callable[[str], None] = print) -> CleanupReport:
    """Delete the live RayJobs labelled with ``run_id`` in ``namespace`` (module doc). ``settle``
    (the run did not succeed): keep listing every ``poll_s`` until ``settle_s`` passed since the last
    live one (at most ``max_s``); else one pass."""
    selector = ",".join(f"{k}={v}" for k, v in run_labels(run_id).items())
    report = CleanupReport()
    start = last_live = clock()
    while True:
        listed = _obj(custom_api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                               label_selector=selector))
        report.lists += 1
        items = [_obj(i) for i in listed.get("items") or []]
        to_delete = live(items)
        for item in to_delete:
            name = item["metadata"]["name"]
            try:
                custom_api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                           propagation_policy="Background")
            except _api_exception() as exc:
                if getattr(exc, "status", None) != 404:
                    raise
            if name not in report.deleted:
                report.deleted.append(name)
                echo(f"[cleanup] deleted RayJob {namespace}/{name} of run {run_id} ({describe(item.get('status'))})")
        for item in items:
            name = item["metadata"]["name"]
            if item not in to_delete and name not in report.kept and name not in report.deleted:
                report.kept.append(name)
        now = clock()
        if to_delete:
            last_live = now
        if not settle or now - last_live >= settle_s or now - start >= max_s:
            return report
        sleep(poll_s)


def cleanup_run_in_cluster(run_id: str, *, succeeded: bool, namespace: str | None = None,
                           echo: Callable[[str], None] = print, **kwargs: Any) -> CleanupReport | None:
    """:func:`cleanup_run` with the pod's service account in its namespace; None outside a
    Kubernetes pod (``kfp.local`` runs, laptops: no RayJob was created there)."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    from kubernetes import client, config

    config.load_incluster_config()
    namespace = namespace or pod_namespace() or "default"
    return cleanup_run(client.CustomObjectsApi(), namespace, run_id, settle=not succeeded, echo=echo, **kwargs)
