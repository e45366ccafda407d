"""What is wrong with a CPU Triton server: why a repository did not load, which python stub died.

Measured on Triton 2.51 (nvidia-pytriton 0.7.0; tests/triton/test_lifecycle.py):
- a python stub killed by SIGSEGV or SIGKILL stays a zombie child of tritonserver; nothing is
  logged (at --log-verbose 0), `/v2/health/ready` and every model's ready endpoint keep
  answering 200, and every request to that model fails with "Stub process '<model>_0_0' is
  not healthy". So health is decided here from the stub processes themselves.
- a model that fails to load is named in the log by `E...] "failed to load '<model>' version 1:
  <exception and its python traceback>"`, a config.pbtxt parse error by a `[libprotobuf ERROR
  ...]` line and `Poll failed for model directory`; the server then exits with only
  "failed to load all models" on its last line.
"""
from __future__ import annotations

import re
from pathlib import Path

STUB_NAME = "triton_python_backend_stub"
_E_LINE = re.compile(r'^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "(.*)"\s*$')
_NOISE = ("CudaDriverHelper has not been initialized",)
_CAUSE_KEYS = ("failed to load '", "Poll failed", "Failed to create instance")


def load_failure_cause(log_text: str, limit: int = 2000) -> str:
    """The lines of a tritonserver log that say why models failed to load ("" if none)."""
    causes: list[str] = []
    errors: list[str] = []
    for line in log_text.splitlines():
        if line.startswith("[libprotobuf ERROR"):
            causes.append("config.pbtxt: " + line.split("] ", 1)[-1].strip())
            continue
        m = _E_LINE.match(line)
        if not m:
            continue
        msg = m.group(1).replace("\\n", "\n").replace('\\"', '"').strip()
        if any(n in msg for n in _NOISE):
            continue
        (causes if any(k in msg for k in _CAUSE_KEYS) else errors).append(msg)
    if any("failed to load '" in c for c in causes):  # the same exception, said twice
        causes = [c for c in causes if "Failed to create instance" not in c]
    out, seen = [], set()
    for msg in causes or errors:
        if msg not in seen:
            seen.add(msg)
            out.append(msg)
    text = "\n".join(out)
    return text if len(text) <= limit else text[:limit] + " ..."


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def stub_processes(server_pid: int) -> dict[int, str]:
    """{pid: model name} of the live python stubs of tritonserver `server_pid`.

    The stub's first argument is the model's `<repo>/<model>/<version>/model.py`.
    """
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        fields = _stat(pid)
        if not fields or len(fields) < 2 or int(fields[1]) != server_pid or fields[0] == "Z":
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(STUB_NAME.encode()) and len(argv) > 1:
            parts = Path(argv[1].decode("utf-8", "replace")).parts
            out[pid] = parts[-3] if len(parts) >= 3 else parts[-1]
    return out


def dead_stubs(stubs: dict[int, str]) -> dict[int, str]:
    """The stubs of `stubs` that have exited (gone, or a zombie nobody reaped)."""
    dead = {}
    for pid, model in stubs.items():
        fields = _stat(pid)
        if fields is None or fields[0] in ("Z", "X"):
            dead[pid] = model
    return dead
