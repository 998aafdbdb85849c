"""SIGTERM as an exception, so that a launcher can stop its remote job before the pod dies.

Kubernetes (and so KFP, Argo) ends a pod with SIGTERM and, after the grace period, SIGKILL; KFP does
not cancel remote work itself. Inside :func:`sigterm_raises` the first SIGTERM raises
:class:`Terminated` (a ``SystemExit`` with code 143 = 128 + 15, what the default action reports);
later SIGTERMs are ignored so the cleanup is not interrupted. Outside the main thread signal handlers
cannot be installed and the context manager does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM (exit status 143)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)
        self.signum = signum


#: What launchers clean up on: SIGTERM (as Terminated) and Ctrl-C.
INTERRUPTS: tuple[type[BaseException], ...] = (Terminated, KeyboardInterrupt)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` once; the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: object) -> None:
        nonlocal fired
        if fired:  # already cleaning up
            return
        fired = True
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
