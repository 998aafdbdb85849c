"""Signals stop the whole process tree: SIGTERM / SIGINT become exceptions in the main thread (so
context managers run: MLflow runs are marked KILLED, a vLLM server is stopped, stores are left
resumable) and are forwarded to every descendant process first (kfp.local task subprocesses,
launchers, servers started in their own session), so no child is orphaned.

``stop_tree_on_signals()`` (the CLI installs it once per process): the first SIGTERM/SIGINT sends the
same signal to all descendants, then raises ``Terminated`` (SIGTERM; a ``SystemExit`` with status
143) or ``KeyboardInterrupt`` (SIGINT). A second signal while cleaning up SIGKILLs the descendants
and exits at once (``os._exit``). Descendants are read from ``/proc`` (Linux); elsewhere only this
process is stopped. Handlers can only be installed from the main thread; elsewhere nothing happens.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Signals that stop a run.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM (exit status 128 + 15 = 143, what the default action reports)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def descendants(pid: int | None = None) -> list[int]:
    """Every live descendant process id of ``pid`` (default: this process; zombies left out),
    children first; ``[]`` without ``/proc``."""
    root = os.getpid() if pid is None else pid
    parents: dict[int, list[int]] = {}
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[0] != "Z":  # a zombie has exited (its parent has not reaped it yet)
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = list(parents.get(root, []))
    while todo:
        child = todo.pop(0)
        if child in out or child == root:
            continue
        out.append(child)
        todo.extend(parents.get(child, []))
    return out


def signal_descendants(signum: int, pid: int | None = None) -> list[int]:
    """Send ``signum`` to every descendant of ``pid``; returns the ids signalled."""
    sent = []
    for child in descendants(pid):
        try:
            os.kill(child, signum)
            sent.append(child)
        except (ProcessLookupError, PermissionError):
            pass
    return sent


def reap_descendants(grace_s: float = 30.0, pid: int | None = None) -> list[int]:
    """After a stop signal was forwarded: wait up to ``grace_s`` for the descendants of ``pid`` to
    exit (their own cleanup: MLflow runs marked KILLED, servers stopped), then SIGKILL the ones left
    (returned)."""
    import time

    deadline = time.monotonic() + grace_s
    while descendants(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return signal_descendants(signal.SIGKILL, pid)


def _handler(signum: int, frame: object) -> None:
    if _state["fired"]:
        signal_descendants(signal.SIGKILL)
        os._exit(128 + signum)
    _state["fired"] = True
    signal_descendants(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


_state = {"fired": False, "installed": False}


def stop_tree_on_signals() -> bool:
    """Install the handlers for the rest of the process (idempotent); False off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if not _state["installed"]:
        for signum in STOP_SIGNALS:
            signal.signal(signum, _handler)
        _state["installed"] = True
    return True


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises ``Terminated`` (after forwarding it to the descendants),
    unless a handler other than the default is already installed (the CLI's, a launcher's)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
