"""Processes `glmtrt serve` starts die with it: tritonserver, its python stubs, their resources.

Measured on Triton 2.51 (nvidia-pytriton 0.7.0, tests/triton/test_lifecycle.py):
- the python stubs are children of tritonserver in its process group, so one `killpg` of the
  group started with `start_new_session` reaches them all;
- after a SIGKILL of tritonserver its stubs, idle or busy, are all still alive 10 s later and
  ignore SIGTERM (the 960 MB engine stub of issue 13 is one of them); SIGKILL of the group ends
  them.

So: tritonserver gets `PR_SET_PDEATHSIG` = SIGKILL (it dies when `glmtrt serve` dies, even by
SIGKILL) and its own process group; a small guardian process (`python -m glmtrt.triton.procs`)
watches `glmtrt serve` and tritonserver and, as soon as either is gone, kills the whole group and
removes the server's shared-memory regions (named by our per-server prefix) and temp dir. The
guardian is what cleans up when `glmtrt serve` itself is SIGKILLed; in every other case
`TritonServer.stop()` does it first and the guardian finds nothing left.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from glmtrt.signals import SignalExit, raise_on_signals

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """prctl(PR_SET_PDEATHSIG, sig) for the calling process (Linux; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not Linux
        return
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:  # pragma: no cover
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def shm_prefix(token: str) -> str:
    """The python backend's `shm-region-prefix-name` for one server (its regions are `/dev/shm/<prefix>*`)."""
    return f"glmtrt_{token}_"


def remove_shm(prefix: str) -> list[str]:
    """Remove `/dev/shm/<prefix>*` (only this server's regions)."""
    removed = []
    for path in glob.glob(f"/dev/shm/{glob.escape(prefix)}*"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live pids of process group `pgid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and int(fields[3]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group; gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start_guardian(watch_pid: int, server_pid: int, prefix: str, tmp_dir: str | None) -> subprocess.Popen:
    """Start the guardian of one server (see the module doc); it exits once it has cleaned up."""
    args = [sys.executable, "-m", "glmtrt.triton.procs", str(watch_pid), str(server_pid), prefix, tmp_dir or ""]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def guard(watch_pid: int, server_pid: int, prefix: str, tmp_dir: str, poll_s: float = 0.3) -> None:
    """Guardian loop: when `watch_pid` or `server_pid` is gone, kill the server's group and remove its
    shm regions; once `watch_pid` is gone too, remove the temp dir; return."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's Ctrl-C is for glmtrt serve
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while alive(watch_pid) and alive(server_pid):
        time.sleep(poll_s)
    kill_group(server_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_members(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    remove_shm(prefix)
    # The temp dir holds the server log: while `glmtrt serve` lives it reads the log (the cause of a
    # failed load) and removes the dir itself; only an orphaned one is removed here.
    while alive(watch_pid):
        time.sleep(poll_s)
    if tmp_dir:
        shutil.rmtree(tmp_dir, ignore_errors=True)


class Stop(SignalExit):
    """SIGTERM / SIGHUP / SIGINT arrived: stop serving (exit status 0 after a clean stop)."""


def stop_on_signals():
    """Turn SIGTERM, SIGHUP and SIGINT into `Stop` inside the block, so cleanup code runs."""
    return raise_on_signals(Stop)


if __name__ == "__main__":  # the guardian process
    guard(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
