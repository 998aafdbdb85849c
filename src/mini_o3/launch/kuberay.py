"""Mode ``rayjob``: a KubeRay RayJob through the Kubernetes API, and the pure success rule.

:func:`decide` is the watcher rule of KubeRay v1.7.0 (kubeflow-kuberay note §9.2): a RayJob is
*done* when ``jobDeploymentStatus`` is ``Complete``, ``Failed`` or ``ValidationFailed`` and has
*succeeded* only when it is ``Complete`` **and** ``jobStatus`` is ``SUCCEEDED``. While retrying
(``backoffLimit`` > 0) ``jobDeploymentStatus`` reads ``Retrying`` and ``jobStatus`` may still read
``FAILED``: not done.

:class:`RayJobLauncher` creates the RayJob (409 → adopt the one of the same name: a retried
launcher pod; if that one already failed it is deleted and created afresh), watches it with
``list … field_selector=metadata.name=NAME`` from the last ``resourceVersion`` (reconnecting after
dropped streams, 410 Gone and API errors; a fresh ``get`` after each reconnect so no transition is
missed), echoes every status change, enforces ``timeout_s`` and ``preRunningDeadlineSeconds``
client-side (Kueue can keep a job suspended past the server-side deadline), fetches the last lines
of the submitter pod's log (KubeRay's submitter Job carries the RayJob's name, its pod the label
``job-name=NAME``; its log is the job's output) or else the head pod's, and deletes the RayJob
(propagation Background) on success, on SIGTERM / Ctrl-C and on a client-side deadline. A failed
RayJob stays for ``kubectl describe``; its Ray cluster goes after ``ttlSecondsAfterFinished``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .rayjob import (
    GROUP,
    PLURAL,
    VERSION,
    build_rayjob,
    pod_namespace,
    shared_work_problem,
    validate_rayjob,
)
from .settings import LaunchError, LaunchSettings, RemoteResult
from .signals import INTERRUPTS, sigterm_raises

DONE_DEPLOYMENT = {"Complete", "Failed", "ValidationFailed"}
#: Deployment states that mean the Ray job has started (for the pre-running deadline).
STARTED_DEPLOYMENT = {"Running", "Complete", "Failed", "ValidationFailed", "Retrying"}
TAIL_LINES = 100


@dataclass(frozen=True)
class Decision:
    """What a RayJob status means for the launcher."""

    done: bool
    success: bool
    message: str


def describe(status: dict[str, Any] | None) -> str:
    """``jobDeploymentStatus/jobStatus (reason: message)`` of a RayJob status."""
    status = status or {}
    text = f"{status.get('jobDeploymentStatus') or 'New'}/{status.get('jobStatus') or '-'}"
    detail = ": ".join(str(status[k]) for k in ("reason", "message") if status.get(k))
    return f"{text} ({detail})" if detail else text


def decide(status: dict[str, Any] | None) -> Decision:
    """The watcher rule (module docstring) for one observed ``status``."""
    status = status or {}
    deployment = status.get("jobDeploymentStatus") or ""
    job = status.get("jobStatus") or ""
    done = deployment in DONE_DEPLOYMENT
    success = deployment == "Complete" and job == "SUCCEEDED"
    return Decision(done=done, success=success, message=describe(status))


class _Deadline(Exception):
    pass


def _api_exception() -> type[Exception]:
    from kubernetes.client.exceptions import ApiException

    return ApiException


def _transient_errors() -> tuple[type[BaseException], ...]:
    import urllib3

    return (OSError, ValueError, urllib3.exceptions.HTTPError)


def _obj(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    to_dict = getattr(item, "to_dict", None)
    return to_dict() if to_dict else dict(item)


class RayJobLauncher:
    """Create → watch → decide → logs → delete, on ``CustomObjectsApi`` / ``CoreV1Api`` (see module doc)."""

    def __init__(self, custom_api: Any, core_api: Any, *, watch_factory: Callable[[], Any] | None = None,
                 watch_timeout_s: int = 60, max_reconnects: int = 20, reconnect_backoff_s: float = 2.0,
                 delete_on_success: bool = True, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if watch_factory is None:
            from kubernetes import watch

            watch_factory = watch.Watch
        self.custom, self.core, self.watch_factory = custom_api, core_api, watch_factory
        self.watch_timeout_s, self.max_reconnects, self.reconnect_backoff_s = watch_timeout_s, max_reconnects, reconnect_backoff_s
        self.delete_on_success, self.clock, self.sleep = delete_on_success, clock, sleep

    @classmethod
    def from_config(cls, **kwargs: Any) -> RayJobLauncher:
        """In-cluster config (the launcher pod's service account), else the local kubeconfig."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, OSError) as exc:
                raise LaunchError(f"no Kubernetes configuration: not in a pod and no usable kubeconfig ({exc})") from exc
        return cls(client.CustomObjectsApi(), client.CoreV1Api(), **kwargs)

    # -- API calls ---------------------------------------------------------------------------------
    def _get(self, name: str, namespace: str) -> dict[str, Any]:
        return _obj(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))

    def delete(self, name: str, namespace: str, echo: Callable[[str], None] = print) -> bool:
        """Delete the RayJob (its cluster and submitter go with it); False when it was already gone."""
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                        propagation_policy="Background")
        except _api_exception() as exc:
            if getattr(exc, "status", None) == 404:
                return False
            echo(f"[rayjob] could not delete {namespace}/{name}: {exc}")
            return False
        echo(f"[rayjob] deleted {namespace}/{name}")
        return True

    def create_or_adopt(self, manifest: dict[str, Any], echo: Callable[[str], None] = print) -> dict[str, Any]:
        """Create the RayJob; on 409 adopt the existing one (a failed one is replaced)."""
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        api_exception = _api_exception()
        for _ in range(3):
            try:
                created = _obj(self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest))
                echo(f"[rayjob] created {namespace}/{name}")
                return created
            except api_exception as exc:
                if getattr(exc, "status", None) != 409:
                    raise LaunchError(f"cannot create RayJob {namespace}/{name}: {exc.status} {exc.reason}: "
                                      f"{getattr(exc, 'body', '') or ''}".rstrip(": ")) from exc
            existing = self._get(name, namespace)
            decision = decide(existing.get("status"))
            if not decision.done or decision.success:
                echo(f"[rayjob] adopting existing {namespace}/{name} ({decision.message})")
                return existing
            echo(f"[rayjob] existing {namespace}/{name} ended {decision.message}; replacing it")
            self.delete(name, namespace, echo)
            self._wait_gone(name, namespace)
        raise LaunchError(f"RayJob {namespace}/{name} keeps existing after deletion; delete it by hand")

    def _wait_gone(self, name: str, namespace: str, timeout_s: float = 60.0) -> None:
        deadline = self.clock() + timeout_s
        while self.clock() < deadline:
            try:
                self._get(name, namespace)
            except _api_exception() as exc:
                if getattr(exc, "status", None) == 404:
                    return
                raise
            self.sleep(1.0)

    def fetch_logs(self, name: str, namespace: str, status: dict[str, Any] | None, lines: int = TAIL_LINES) -> list[str]:
        """Last log lines of the submitter pod (the job's output), else of the head pod; never raises."""
        selectors = [(f"job-name={name}", None)]
        cluster = (status or {}).get("rayClusterName")
        if cluster:
            selectors.append((f"ray.io/cluster={cluster},ray.io/node-type=head", "ray-head"))
        for selector, container in selectors:
            try:
                pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
                if not pods:
                    continue
                pod = max(pods, key=lambda p: str(getattr(p.metadata, "creation_timestamp", "") or ""))
                kwargs = {"tail_lines": lines}
                if container:
                    kwargs["container"] = container
                text = self.core.read_namespaced_pod_log(pod.metadata.name, namespace, **kwargs)
                return str(text).splitlines()[-lines:]
            except Exception as exc:  # noqa: BLE001 — logs are best effort
                return [f"(logs unavailable: {exc.__class__.__name__}: {exc})"]
        return ["(no submitter or head pod found for logs)"]

    # -- the loop ----------------------------------------------------------------------------------
    def _check_deadlines(self, start: float, status: dict[str, Any], timeout_s: float | None,
                         pre_running_s: float | None) -> float:
        """Seconds until the nearest client-side deadline (inf if none); raises _Deadline when one passed."""
        now = self.clock() - start
        left = float("inf")
        if timeout_s is not None:
            if now >= timeout_s:
                raise _Deadline(f"exceeded launch.timeout_s={timeout_s:g}s")
            left = min(left, timeout_s - now)
        if pre_running_s is not None and (status.get("jobDeploymentStatus") or "") not in STARTED_DEPLOYMENT:
            if now >= pre_running_s:
                raise _Deadline(f"did not start running within preRunningDeadlineSeconds={pre_running_s:g} "
                                f"(still {describe(status)}; e.g. suspended by Kueue)")
            left = min(left, pre_running_s - now)
        return left

    def wait(self, obj: dict[str, Any], *, start: float, timeout_s: float | None = None,
             pre_running_s: float | None = None, echo: Callable[[str], None] = print) -> tuple[Decision, dict[str, Any]]:
        """Follow the RayJob ``obj`` until :func:`decide` says done; (decision, last status)."""
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        api_exception = _api_exception()
        rv: str | None = obj["metadata"].get("resourceVersion")
        status: dict[str, Any] = obj.get("status") or {}
        shown: str | None = None
        dashboard_shown = False
        failures = 0

        def observe(new_status: dict[str, Any]) -> Decision:
            nonlocal shown, dashboard_shown
            decision = decide(new_status)
            if decision.message != shown:
                echo(f"[rayjob] {namespace}/{name}: {decision.message}")
                shown = decision.message
            if new_status.get("dashboardURL") and not dashboard_shown:
                echo(f"[rayjob] Ray dashboard (live logs): {new_status['dashboardURL']}")
                dashboard_shown = True
            return decision

        while True:
            decision = observe(status)
            if decision.done:
                return decision, status
            wait_s = self._check_deadlines(start, status, timeout_s, pre_running_s)
            watcher = self.watch_factory()
            try:
                kwargs: dict[str, Any] = {"field_selector": f"metadata.name={name}",
                                          "timeout_seconds": max(1, int(min(self.watch_timeout_s, wait_s)))}
                if rv:
                    kwargs["resource_version"] = rv
                for event in watcher.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace,
                                            PLURAL, **kwargs):
                    kind, item = event.get("type"), _obj(event.get("object") or {})
                    rv = (item.get("metadata") or {}).get("resourceVersion") or rv
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        raise LaunchError(f"RayJob {namespace}/{name} was deleted while the launcher waited "
                                          f"(last status {describe(item.get('status') or status)})")
                    status = item.get("status") or {}
                    failures = 0
                    if observe(status).done:
                        return decide(status), status
                    self._check_deadlines(start, status, timeout_s, pre_running_s)
                # Stream ended (server timeout): reconnect from rv.
            except api_exception as exc:
                code = getattr(exc, "status", None)
                if code == 410:  # resourceVersion too old: re-read below
                    rv = None
                elif code in (401, 403, 404):
                    what = "was deleted" if code == 404 else f"cannot be watched ({code} {exc.reason})"
                    raise LaunchError(f"RayJob {namespace}/{name} {what}") from exc
                else:
                    failures = self._reconnect(failures, exc, echo)
                    rv = None
            except _transient_errors() as exc:  # dropped connections, truncated chunks
                failures = self._reconnect(failures, exc, echo)
                rv = None
            finally:
                stop = getattr(watcher, "stop", None)
                if stop:
                    stop()
            if rv is None:
                try:
                    fresh = self._get(name, namespace)
                except api_exception as exc:
                    if getattr(exc, "status", None) == 404:
                        raise LaunchError(f"RayJob {namespace}/{name} was deleted while the launcher waited") from exc
                    failures = self._reconnect(failures, exc, echo)
                    continue
                rv = fresh["metadata"].get("resourceVersion")
                status = fresh.get("status") or {}

    def _reconnect(self, failures: int, exc: BaseException, echo: Callable[[str], None]) -> int:
        failures += 1
        if failures > self.max_reconnects:
            raise LaunchError(f"lost the Kubernetes API {failures} times in a row; last error: {exc}") from exc
        delay = min(self.reconnect_backoff_s * 2 ** (failures - 1), 30.0)
        echo(f"[rayjob] watch interrupted ({exc.__class__.__name__}: {exc}); reconnecting in {delay:.0f}s")
        self.sleep(delay)
        return failures

    def launch(self, manifest: dict[str, Any], *, timeout_s: float | None = None,
               echo: Callable[[str], None] = print) -> RemoteResult:
        """Run the RayJob ``manifest`` (validated here) to the end; :class:`LaunchError` unless it succeeded."""
        validate_rayjob(manifest)
        meta = manifest["metadata"]
        if not meta.get("namespace"):
            raise ValueError("the RayJob manifest needs metadata.namespace")
        name, namespace = meta["name"], meta["namespace"]
        pre_running = manifest["spec"].get("preRunningDeadlineSeconds")
        start = self.clock()
        with sigterm_raises():
            try:
                obj = self.create_or_adopt(manifest, echo)
                decision, status = self.wait(obj, start=start, timeout_s=timeout_s, pre_running_s=pre_running, echo=echo)
            except INTERRUPTS:
                echo(f"[rayjob] interrupted: deleting {namespace}/{name}")
                self.delete(name, namespace, echo)
                raise
            except _Deadline as exc:
                logs = self.fetch_logs(name, namespace, None)
                self.delete(name, namespace, echo)
                raise LaunchError(f"RayJob {namespace}/{name} {exc}; deleted it", logs_tail=logs, status="TIMEOUT") from None
        logs = self.fetch_logs(name, namespace, status)
        seconds = self.clock() - start
        if not decision.success:
            raise LaunchError(f"RayJob {namespace}/{name} failed: {decision.message}", logs_tail=logs,
                              status=status.get("jobStatus") or status.get("jobDeploymentStatus"))
        echo(f"[rayjob] {namespace}/{name} SUCCEEDED in {seconds:.0f}s")
        if self.delete_on_success:
            self.delete(name, namespace, echo)
        return RemoteResult(name=name, mode="rayjob", status="SUCCEEDED", logs_tail=logs, seconds=seconds)


def rayjob_manifest(entrypoint: list[str], settings: LaunchSettings, *, name: str,
                    runtime_env: dict | None = None, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated RayJob :func:`run_rayjob` submits for ``entrypoint``, in ``settings.namespace``
    (default: the pod's); ``owner``: see :func:`build_rayjob` (``{}``: none). Refuses
    (:class:`LaunchError`) a RayJob with worker pods but no ``work_volume_claim``: the stage's work
    folder must be shared by every Ray pod."""
    problem = shared_work_problem(settings)
    if problem:
        raise LaunchError(f"RayJob {name}: {problem}", status="INVALID")
    namespace = settings.namespace or pod_namespace() or "default"
    return build_rayjob(name, entrypoint, settings, runtime_env=runtime_env, namespace=namespace, owner=owner)


def run_rayjob(entrypoint: list[str], settings: LaunchSettings, *, name: str, runtime_env: dict | None = None,
               echo: Callable[[str], None] = print, launcher: RayJobLauncher | None = None) -> RemoteResult:
    """Build (:func:`rayjob_manifest`: nothing is created when it refuses) and run the RayJob for ``entrypoint``."""
    manifest = rayjob_manifest(entrypoint, settings, name=name, runtime_env=runtime_env)
    launcher = launcher or RayJobLauncher.from_config()
    return launcher.launch(manifest, timeout_s=settings.timeout_s, echo=echo)
