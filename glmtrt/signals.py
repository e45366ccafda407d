"""SIGTERM / SIGHUP / SIGINT as an exception, so the cleanup code of a block runs.

What `timeout`, systemd, `docker stop`, Kubernetes and a closed terminal send would otherwise end
the process at once, skipping every `finally`. Used by atomic outputs (glmtrt.checkpoint.atomic)
and `glmtrt serve` (glmtrt.triton.procs).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class SignalExit(BaseException):
    """One of `STOP_SIGNALS` arrived; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def raise_on_signals(exc_type: type[SignalExit] = SignalExit) -> Iterator[None]:
    """Inside the block the first stop signal raises `exc_type(signum)`; later ones are ignored
    so the cleanup it triggers can finish. Handlers are restored after. Main thread only (a
    no-op elsewhere: Python delivers signals to the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise exc_type(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
