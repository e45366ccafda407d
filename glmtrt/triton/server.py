"""`glmtrt serve`: a real Triton Inference Server on CPU (python-backend repositories).

The server binary comes from the `nvidia-pytriton==0.7.0` wheel (Triton 2.51, python backend
only); the recipe and its gotchas are in shared/TRITON_CPU.md:

- a backend directory holding `libtriton_python.so`, `triton_python_backend_utils.py` and the
  `triton_python_backend_stub` built for *this* interpreter's minor version;
- `LD_LIBRARY_PATH` with the wheel's bundled libs and the interpreter's LIBDIR (the stub links
  `libpython3.X.so`), `PATH` with this interpreter's bin first (the stub finds its environment
  through `python3` on PATH and ignores PYTHONPATH);
- every endpoint bound to 127.0.0.1 on free ports, a short `--exit-timeout-secs`;
- python-backend shared-memory regions of *this* server (our own `shm-region-prefix-name`)
  removed after it stops (never others');
- tritonserver and its stubs die with us (glmtrt.triton.procs); a dead stub is noticed
  (glmtrt.triton.health: Triton itself keeps answering ready) and a model that fails to load is
  reported with its cause and a kept server log.

A repository whose `tensorrt_llm` model uses the real `tensorrtllm` backend cannot run here:
`glmtrt serve` prints (or, with --run, executes) the official-container command instead.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from glmtrt.errors import GlmtrtError
from glmtrt.triton import health, procs

log = logging.getLogger(__name__)

_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


def pytriton_root() -> Path:
    """Directory `pytriton/tritonserver` of the installed nvidia-pytriton wheel."""
    try:
        import pytriton  # noqa: F401  (only to locate the wheel)
    except ImportError as exc:
        raise GlmtrtError("nvidia-pytriton is not installed (it carries the CPU tritonserver binary)",
                          expected="nvidia-pytriton==0.7.0 on x86_64",
                          fix='pip install "nvidia-pytriton==0.7.0" (or pip install -e ".[triton]")') from exc
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise GlmtrtError(f"no tritonserver binary under {root}",
                          expected="the nvidia-pytriton 0.7.0 x86_64 wheel layout",
                          fix='pip install --force-reinstall "nvidia-pytriton==0.7.0"')
    return root


def prepare_backend_dir(dest: Path) -> Path:
    """Fill `dest/python` with the python backend and the stub matching this interpreter.

    Files already there with the same size are kept. Returns `dest` (the --backend-directory).
    """
    root = pytriton_root()
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
    if not stub.is_file():
        raise GlmtrtError(f"nvidia-pytriton has no python backend stub for Python {ver}",
                          expected="Python 3.8 .. 3.13 (3.10/3.11 recommended: newer stubs crash in decoupled BLS)",
                          fix="create the venv with Python 3.11")
    pydir = dest / "python"
    pydir.mkdir(parents=True, exist_ok=True)
    sources = [root / "backends" / "python" / name for name in _BACKEND_FILES] + [stub]
    for src in sources:
        target = pydir / src.name
        if not target.exists() or target.stat().st_size != src.stat().st_size:
            tmp = target.with_suffix(target.suffix + ".tmp")
            shutil.copy2(src, tmp)
            os.replace(tmp, target)
    return dest


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and its python stubs (see shared/TRITON_CPU.md)."""
    env = dict(os.environ if base is None else base)
    root = pytriton_root()
    libs = [str(root.parent.parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or ""]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(p for p in libs if p)
    # the venv's bin, not the resolved interpreter: the stub finds site-packages via `python3` on PATH
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    return env


def repository_backend(repo: Path) -> str:
    """The backend of the repository's `tensorrt_llm` model ("python", "tensorrtllm", or "" if absent)."""
    cfg = Path(repo) / "tensorrt_llm" / "config.pbtxt"
    if not cfg.is_file():
        return ""
    for line in cfg.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "backend":
            return value.strip().strip('"')
    return ""


class _PortTaken(Exception):
    """tritonserver exited because one of its ports was in use."""


class TritonServer:
    """A tritonserver process on CPU serving `repo`; use as a context manager.

    >>> with TritonServer("triton_models/tiny") as srv:
    ...     srv.grpc_url   # "127.0.0.1:PORT"
    """

    def __init__(self, repo: str | os.PathLike, *, host: str = "127.0.0.1", http_port: int | None = None,
                 grpc_port: int | None = None, metrics_port: int | None = None,
                 backend_dir: str | os.PathLike | None = None, ready_timeout: float = 120.0,
                 exit_timeout: int = 5, log_verbose: int = 0, extra_args: tuple[str, ...] = (),
                 log_file: str | os.PathLike | None = None):
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise GlmtrtError(f"model repository {self.repo} does not exist",
                              fix="generate one with `glmtrt repo ... -o DIR`")
        if repository_backend(self.repo) == "tensorrtllm":
            raise GlmtrtError(f"{self.repo} serves a TensorRT engine (backend tensorrtllm): it needs a GPU",
                              expected="a repository generated with --engine reference for CPU serving",
                              fix="run `glmtrt serve REPO` to print the container command, or --run it on the GPU host")
        self.host = host
        self._auto_ports = not (http_port or grpc_port or metrics_port)
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self._backend_dir = Path(backend_dir) if backend_dir else None
        self.ready_timeout = ready_timeout
        self.exit_timeout = exit_timeout
        self.log_verbose = log_verbose
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._log_file = None
        self.log_path: Path | None = Path(log_file).absolute() if log_file else None
        self._log_chosen = log_file is not None
        self.shm_prefix = procs.shm_prefix(uuid.uuid4().hex[:12])
        self.stubs: dict[int, str] = {}
        self._guardian: subprocess.Popen | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        """gRPC address for tritonclient.grpc (host:port)."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """HTTP address for tritonclient.http (host:port)."""
        return f"{self.host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self, backend_dir: Path) -> list[str]:
        """The tritonserver command line this server runs."""
        h = self.host
        return [str(pytriton_root() / "bin" / "tritonserver"), f"--model-repository={self.repo}",
                f"--backend-directory={backend_dir}",
                f"--http-address={h}", f"--grpc-address={h}", f"--metrics-address={h}",
                f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
                f"--metrics-port={self.metrics_port}", f"--exit-timeout-secs={self.exit_timeout}",
                f"--log-verbose={self.log_verbose}",
                f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}", *self.extra_args]

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "TritonServer":
        """Start the server and wait until it is ready (or raise with the log tail).

        Ports picked automatically can be taken by another process between the pick and the
        server's bind; then the server exits and is started again on new ports (3 tries).
        """
        if self._proc is not None:
            return self
        for attempt in range(3):
            try:
                return self._start_once()
            except _PortTaken:
                if not self._auto_ports or attempt == 2:
                    raise GlmtrtError(f"tritonserver could not bind its ports (http {self.http_port}, grpc "
                                      f"{self.grpc_port}, metrics {self.metrics_port})",
                                      fix="choose free ports with --http-port/--grpc-port/--metrics-port") from None
                log.warning("a port was taken before tritonserver could bind it; retrying on new ports")
                self.http_port, self.grpc_port, self.metrics_port = (free_port(self.host) for _ in range(3))
        raise AssertionError("unreachable")

    def _start_once(self) -> "TritonServer":
        self._tmp = tempfile.TemporaryDirectory(prefix="glmtrt-triton-")
        tmp = Path(self._tmp.name)
        backend_dir = self._backend_dir
        if backend_dir is None:
            cwd_build = Path.cwd() / "build"
            backend_dir = cwd_build / "triton" / "backends" if cwd_build.is_dir() else tmp / "backends"
        prepare_backend_dir(backend_dir)
        if not self._log_chosen:
            self.log_path = tmp / "tritonserver.log"
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "wb")
        except OSError as exc:
            self.stop()
            raise GlmtrtError(f"cannot write the server log {self.log_path}: {exc}",
                              fix="choose a writable --log-file") from exc
        cmd = self.command(backend_dir.resolve())
        log.info("starting tritonserver: repo %s, http %s, grpc %s", self.repo, self.http_url, self.grpc_url)
        log.debug("command: %s", " ".join(cmd))
        # own process group (the stubs join it: one killpg ends them all); dies with us even by SIGKILL
        self._proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=server_env(),
                                      start_new_session=True, preexec_fn=procs.die_with_parent)
        self._guardian = procs.start_guardian(os.getpid(), self._proc.pid, self.shm_prefix, str(tmp))
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        """True when the server answers ready on HTTP."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _owns_ports(self) -> bool:
        """True once OUR server logged that it listens on its HTTP and gRPC ports (another server on
        a recycled port would answer /v2/health/ready too)."""
        if self.log_path is None or not self.log_path.exists():
            return False
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return (f"Started HTTPService at {self.http_url}" in text
                and f"Started GRPCInferenceService at {self.grpc_url}" in text)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                text = self.log_text()
                if "address already in use" in text.lower():
                    raise _PortTaken()
                cause = health.load_failure_cause(text) or self.log_tail()
                kept = self.keep_log()
                raise GlmtrtError(f"tritonserver could not load {self.repo} (exit code {self._proc.returncode}):\n"
                                  f"{cause}\n(server log: {kept})",
                                  fix="fix the model named above; `glmtrt repo --check REPO` checks a repository")
            if self._owns_ports() and self.is_ready():
                self.stubs = health.stub_processes(self._proc.pid)
                log.info("tritonserver ready (pid %d, %d python stubs)", self._proc.pid, len(self.stubs))
                return
            time.sleep(0.2)
        kept = self.keep_log()
        raise GlmtrtError(f"tritonserver not ready after {self.ready_timeout:.0f} s (server log: {kept})",
                          expected="all models load and /v2/health/ready answers 200",
                          fix="read the server log; raise --ready-timeout for big models"
                              f"\n--- server log (tail) ---\n{self.log_tail()}")

    def health(self) -> str | None:
        """None while the server and every python stub it started live; else what died.

        Triton keeps answering ready after a stub dies (see glmtrt.triton.health), so this
        watches the processes themselves.
        """
        if self._proc is None:
            return "tritonserver is not running"
        if self._proc.poll() is not None:
            return f"tritonserver exited with code {self._proc.returncode}"
        dead = health.dead_stubs(self.stubs)
        if dead:
            return ("python stub of " + ", ".join(f"model {m} (pid {p})" for p, m in sorted(dead.items()))
                    + ' died; requests to it fail with "Stub process is not healthy"')
        return None

    def log_text(self) -> str:
        """The whole server log so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def keep_log(self) -> Path | None:
        """Copy the server log out of the temp dir (which stop() removes); returns where it is kept:
        build/triton/logs/ under the working directory when there is a build/, else the temp dir."""
        if self.log_path is None or not self.log_path.exists():
            return None
        if self._log_chosen:
            return self.log_path
        cwd_build = Path.cwd() / "build"
        dest_dir = cwd_build / "triton" / "logs" if cwd_build.is_dir() else Path(tempfile.gettempdir())
        dest = dest_dir / f"tritonserver-{time.strftime('%Y%m%d-%H%M%S')}-{self._proc.pid if self._proc else 0}.log"
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.log_path, dest)
        except OSError as exc:
            log.warning("could not keep the server log at %s: %s", dest, exc)
            return self.log_path
        return dest

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the server log."""
        text = self.log_text().splitlines()
        return "\n".join(text[-lines:]) if text else "(no log)"

    def stop(self) -> None:
        """Stop the server (SIGINT, SIGKILL after the exit timeout), kill what is left of its process
        group (stubs), remove its shm regions and temp dir. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=self.exit_timeout + 10)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver did not exit in time; killing it")
            procs.kill_group(proc.pid, signal.SIGKILL)   # stubs that outlive it (busy ones ignore SIGTERM)
            proc.wait(timeout=10)
            deadline = time.monotonic() + 10
            while procs.group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        for path in procs.remove_shm(self.shm_prefix):
            log.debug("removed leftover %s", path)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if self._guardian is not None:      # everything it guards is cleaned up: end it
            self._guardian.terminate()
            try:
                self._guardian.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._guardian.kill()
                self._guardian.wait()
            self._guardian = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def register(group) -> None:
    """Add the serve command (glmtrt.triton.serve_cmd)."""
    from glmtrt.triton.serve_cmd import serve

    group.add_command(serve)
