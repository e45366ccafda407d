"""Run the OpenAI endpoint and the web chat next to a Triton server (`glmtrt demo --ui`).

Both fronts are child processes (`python -m glmtrt openai|ui`) that die with this one:
terminated on exit and on SIGTERM, and asked by the kernel (PR_SET_PDEATHSIG) to stop when
the parent dies without cleaning up. Everything binds 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
import urllib.request

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


def _wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise GlmtrtError(f"{what} exited with code {proc.returncode} before it was ready",
                              fix="run it alone to see its error (glmtrt -v openai / glmtrt ui)")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise GlmtrtError(f"{what} did not answer {url} within {timeout:.0f} s")


@contextlib.contextmanager
def fronts(grpc_url: str, metrics: str, *, api_port: int, ui_port: int, temperature: float = 0.0,
           timeout: float = 120.0):
    """Start `glmtrt openai` and `glmtrt ui` for the Triton at `grpc_url`; yields their URLs."""
    py = [sys.executable, "-m", "glmtrt"]
    cmds = {"api": py + ["openai", "--triton", grpc_url, "--port", str(api_port)],
            "ui": py + ["ui", "--triton", grpc_url, "--metrics", metrics, "--port", str(ui_port),
                        "--temperature", str(temperature)]}
    procs: dict[str, subprocess.Popen] = {}
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        for name, cmd in cmds.items():
            procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        urls = {"api": f"http://127.0.0.1:{api_port}/v1", "ui": f"http://127.0.0.1:{ui_port}"}
        _wait_http(f"http://127.0.0.1:{api_port}/health", procs["api"], "glmtrt openai", timeout)
        _wait_http(f"{urls['ui']}/_stcore/health", procs["ui"], "glmtrt ui", timeout)
        yield urls
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        signal.signal(signal.SIGTERM, previous)
