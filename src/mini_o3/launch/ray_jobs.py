"""Mode ``ray``: a job on an existing Ray cluster through the Ray Jobs API (``JobSubmissionClient``).

Flow: connect → submit under ``submission_id = name`` (a running or succeeded job of that id —
a retried launcher pod — is adopted; after a failed or stopped one the next free ``name-2``,
``name-3``, … is used) → stream the job's logs through ``echo`` while polling its status → succeed
on ``SUCCEEDED``; ``FAILED`` / ``STOPPED`` raise :class:`LaunchError` with Ray's message and the
last log lines. ``secret_env`` cannot apply to an existing cluster (its pods must carry those
variables); the launcher says so and never copies secret values into the job. SIGTERM, Ctrl-C and the client-side ``timeout_s`` stop the job (``stop_job``),
wait briefly until Ray reports it terminal, and re-raise.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .settings import LaunchError, LaunchSettings, RemoteResult
from .signals import INTERRUPTS, sigterm_raises

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
TAIL_LINES = 50
MAX_SUBMISSION_ATTEMPTS = 100


class _LogTail:
    """Follows a job's logs in a daemon thread (``tail_job_logs``), echoing lines and keeping a tail."""

    def __init__(self, client: Any, submission_id: str, echo: Callable[[str], None]) -> None:
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.error: BaseException | None = None
        self._client, self._id, self._echo = client, submission_id, echo
        self._partial = ""
        self._thread = threading.Thread(target=self._run, name=f"ray-logs-{submission_id}", daemon=True)
        self._thread.start()

    def _emit(self, chunk: str) -> None:
        text = self._partial + chunk
        *complete, self._partial = text.split("\n")
        for line in complete:
            self.lines.append(line)
            self._echo(line)

    def _run(self) -> None:
        async def follow() -> None:
            async for chunk in self._client.tail_job_logs(self._id):
                self._emit(chunk)

        try:
            asyncio.run(follow())
        except Exception as exc:  # noqa: BLE001 — the status poller decides; logs are best effort
            self.error = exc
        if self._partial:
            self._emit("\n")

    def finish(self, timeout: float = 15.0) -> list[str]:
        """Wait for the stream to end (it does when the job ends); fall back to ``get_job_logs``."""
        self._thread.join(timeout)
        if not self.lines or self.error is not None or self._thread.is_alive():
            try:
                full = self._client.get_job_logs(self._id).splitlines()
            except Exception:  # noqa: BLE001
                full = []
            if len(full) > len(self.lines):
                return full[-TAIL_LINES:]
        return list(self.lines)


def _client(address: str | None) -> Any:
    from ray.job_submission import JobSubmissionClient

    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise LaunchError("mode ray needs launch.ray_address (the Ray dashboard URL, e.g. http://head-svc:8265) "
                          "or RAY_API_SERVER_ADDRESS / RAY_ADDRESS")
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError from Ray
        raise LaunchError(f"cannot reach the Ray Jobs API at {address}: {exc}") from exc


def _status(info: Any) -> str:
    return str(getattr(info.status, "value", info.status))


def _submit_or_adopt(client: Any, name: str, entrypoint: str, runtime_env: dict | None,
                     metadata: dict[str, str], echo: Callable[[str], None]) -> tuple[str, bool]:
    """The submission id to follow and whether it was adopted (already existing)."""
    for attempt in range(1, MAX_SUBMISSION_ATTEMPTS + 1):
        sid = name if attempt == 1 else f"{name}-{attempt}"
        try:
            info = client.get_job_info(sid)
        except RuntimeError:  # "Job ... does not exist"
            info = None
        if info is None:
            client.submit_job(entrypoint=entrypoint, submission_id=sid, runtime_env=runtime_env, metadata=metadata)
            echo(f"[ray] submitted {sid}: {entrypoint}")
            return sid, False
        status = _status(info)
        if status not in TERMINAL or status == "SUCCEEDED":
            echo(f"[ray] adopting existing job {sid} ({status})")
            return sid, True
        echo(f"[ray] job {sid} exists and ended {status}; submitting a new attempt")
    raise LaunchError(f"{MAX_SUBMISSION_ATTEMPTS} earlier submissions of {name} exist; pick a new job name")


def _stop(client: Any, sid: str, echo: Callable[[str], None], wait_s: float = 20.0) -> str | None:
    """Stop the job and wait until Ray reports it terminal; the final status, or None when unknown."""
    try:
        client.stop_job(sid)
        echo(f"[ray] stop requested for {sid}")
    except Exception as exc:  # noqa: BLE001 — best effort while terminating
        echo(f"[ray] could not stop {sid}: {exc}")
        return None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            status = _status(client.get_job_info(sid))
        except Exception:  # noqa: BLE001
            return None
        if status in TERMINAL:
            echo(f"[ray] {sid} is {status}")
            return status
        time.sleep(0.5)
    return None


def run_ray_job(entrypoint: list[str], settings: LaunchSettings, *, name: str, runtime_env: dict | None = None,
                echo: Callable[[str], None] = print, poll_s: float = 1.0) -> RemoteResult:
    """Run ``entrypoint`` as a Ray job and follow it to the end (see the module docstring)."""
    if settings.secret_env:  # Secrets cannot be mounted into an existing cluster; never copy their values
        echo(f"[ray] launch.secret_env applies to mode rayjob only; the Ray cluster's pods must already carry "
             f"{', '.join(sorted(settings.secret_env))}")
    env = dict(runtime_env or {})
    env_vars = {**settings.env, **dict(env.get("env_vars") or {})}
    if env_vars:
        env["env_vars"] = {k: str(v) for k, v in env_vars.items()}
    command = shlex.join(entrypoint)
    start = time.monotonic()
    client = _client(settings.ray_address)
    with sigterm_raises():
        sid, _ = _submit_or_adopt(client, name, command, env or None, {"mini-o3/job": name}, echo)
        tail = _LogTail(client, sid, echo)
        try:
            while True:
                info = client.get_job_info(sid)
                status = _status(info)
                if status in TERMINAL:
                    break
                if settings.timeout_s is not None and time.monotonic() - start > settings.timeout_s:
                    _stop(client, sid, echo)
                    raise LaunchError(f"Ray job {sid} exceeded launch.timeout_s={settings.timeout_s:g}s and was stopped",
                                      logs_tail=tail.finish(5.0), status="TIMEOUT")
                time.sleep(poll_s)
        except INTERRUPTS:
            _stop(client, sid, echo)
            raise
        lines = tail.finish()
    seconds = time.monotonic() - start
    if status != "SUCCEEDED":
        message = getattr(info, "message", None) or ""
        raise LaunchError(f"Ray job {sid} ended {status}: {message}".rstrip(": "), logs_tail=lines, status=status)
    echo(f"[ray] {sid} SUCCEEDED in {seconds:.1f}s")
    return RemoteResult(name=sid, mode="ray", status=status, logs_tail=lines, seconds=seconds)
