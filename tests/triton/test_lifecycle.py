"""`glmtrt serve` lifecycle on a real CPU Triton (issue 13 items 1 and 3).

Every way of stopping it leaves no process, port, temp dir or /dev/shm region; a dead python
stub or a dead tritonserver makes it exit 3 with the cause (Triton itself keeps answering
ready); a model that fails to load is reported with its real cause and a kept server log.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from glmtrt.triton import procs
from glmtrt.triton.health import stub_processes
from glmtrt.triton.server import free_port

pytestmark = [pytest.mark.triton, pytest.mark.slow,
              pytest.mark.skipif(os.uname().machine != "x86_64", reason="nvidia-pytriton is x86_64 only")]


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory, scripted, tok_dir):
    """The scripted model with one instance per python model: few stubs, quick to start."""
    from glmtrt.triton.generator import RepoOptions, generate_repository

    out = tmp_path_factory.mktemp("small") / "triton_repo"
    return generate_repository(RepoOptions(source=scripted[0], tokenizer=tok_dir, output=out, engine="reference",
                                           max_batch_size=4, bls_instances=1, python_instances=1,
                                           max_input_len=64, max_seq_len=128))


class Serve:
    """`glmtrt serve REPO` as a child process, with what it started."""

    def __init__(self, repo, *extra, cwd=None):
        pytest.importorskip("tritonclient.grpc")
        self.args = (repo, extra, cwd)
        self._start(repo, extra, cwd)

    def _start(self, repo, extra, cwd):
        self.ports = [free_port() for _ in range(3)]
        cmd = [sys.executable, "-m", "glmtrt", "serve", str(repo), "--http-port", str(self.ports[0]),
               "--grpc-port", str(self.ports[1]), "--metrics-port", str(self.ports[2]), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                         for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, buf):
        for line in stream:
            buf.append(line)

    def wait_ready(self, timeout=240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("Triton ready" in line for line in self.out):
                break
            if self.proc.poll() is not None:
                time.sleep(1)
                if "could not bind" in "".join(self.err) and not getattr(self, "_retried", False):
                    self._retried = True   # another process took a picked port meanwhile: new ports
                    self._start(*self.args)
                    continue
                pytest.fail(f"glmtrt serve exited {self.proc.returncode}: {''.join(self.out + self.err)[-3000:]}")
            time.sleep(0.2)
        else:
            self.proc.kill()
            pytest.fail("glmtrt serve not ready in time")
        kids = [int(p) for p in subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
        self.server = next(k for k in kids if b"tritonserver" in Path(f"/proc/{k}/cmdline").read_bytes())
        argv = Path(f"/proc/{self.server}/cmdline").read_bytes().decode().split("\0")
        self.prefix = next(a for a in argv if "shm-region-prefix-name=" in a).rsplit("=", 1)[1]
        self.tmp = Path(os.readlink(f"/proc/{self.server}/fd/1")).parent
        self.members = procs.group_members(self.server)
        self.stubs = stub_processes(self.server)
        assert len(self.members) == len(self.stubs) + 1 and self.stubs
        assert glob.glob(f"/dev/shm/{self.prefix}*")
        return self

    def wait_exit(self, timeout=90) -> int:
        rc = self.proc.wait(timeout=timeout)
        for t in self._readers:
            t.join(timeout=5)
        return rc

    def assert_nothing_left(self):
        deadline = time.monotonic() + 20   # the guardian cleans up asynchronously after a SIGKILL
        while time.monotonic() < deadline:
            left = [p for p in self.members if procs.alive(p)]
            if not left and not glob.glob(f"/dev/shm/{self.prefix}*") and not self.tmp.exists():
                break
            time.sleep(0.2)
        assert not [p for p in self.members if procs.alive(p)], "processes left"
        assert not glob.glob(f"/dev/shm/{self.prefix}*"), "shared memory left"
        assert not self.tmp.exists(), "temp dir left"
        for port in self.ports:
            with socket.socket() as s:   # nobody listens any more (TIME_WAIT of old connections is fine)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))


def test_stop_on_signals_turns_each_signal_into_a_clean_stop():
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        with pytest.raises(procs.Stop) as info:
            with procs.stop_on_signals():
                os.kill(os.getpid(), sig)
                time.sleep(5)
        assert info.value.signum == sig
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL   # restored


def test_sigterm_leaves_nothing(small_repo):
    srv = Serve(small_repo).wait_ready()
    os.kill(srv.proc.pid, signal.SIGTERM)
    assert srv.wait_exit() == 0, "".join(srv.err)[-2000:]
    assert "stopped" in "".join(srv.err)
    srv.assert_nothing_left()


def test_sigkill_of_serve_leaves_nothing(small_repo):
    """tritonserver dies by PR_SET_PDEATHSIG; its stubs (which survive a dead tritonserver and
    ignore SIGTERM, measured) are killed with the group by the guardian."""
    srv = Serve(small_repo).wait_ready()
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.wait_exit()
    srv.assert_nothing_left()


def test_dead_stub_is_noticed(small_repo):
    srv = Serve(small_repo, "--health-interval", "2").wait_ready()
    engine = next(p for p, m in srv.stubs.items() if m == "tensorrt_llm")
    os.kill(engine, signal.SIGSEGV)
    time.sleep(0.3)
    if srv.proc.poll() is None:   # what Triton says meanwhile: still ready (why we watch the stubs)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.ports[0]}/v2/health/ready", timeout=2) as r:
                assert r.status == 200
        except OSError:
            pass   # serve already stopping it
    assert srv.wait_exit() == 3
    err = "".join(srv.err)
    assert "model tensorrt_llm" in err and "died" in err and "server log:" in err
    srv.assert_nothing_left()


def test_sigkill_of_tritonserver_exits_3_and_no_stub_survives(small_repo):
    srv = Serve(small_repo, "--health-interval", "0.5").wait_ready()
    os.kill(srv.server, signal.SIGKILL)
    assert srv.wait_exit() == 3
    assert "tritonserver exited with code -9" in "".join(srv.err)
    srv.assert_nothing_left()


@pytest.mark.parametrize("case", ["model_py"])
def test_load_failure_shows_the_cause_and_keeps_the_log(small_repo, tmp_path, case):
    bad = tmp_path / "repo"
    shutil.copytree(small_repo, bad, symlinks=True)
    if case == "model_py":
        (bad / "postprocessing" / "1" / "model.py").write_text(
            "class TritonPythonModel:\n    def initialize(self, args):\n"
            "        raise RuntimeError('分词器坏了: injected')\n", encoding="utf-8")
        want = ["failed to load 'postprocessing'", "RuntimeError: 分词器坏了: injected", "model.py"]
    else:
        cfg = bad / "preprocessing" / "config.pbtxt"
        cfg.write_text(cfg.read_text().replace("backend:", "bakend:", 1))
        want = ["config.pbtxt", "bakend", "Poll failed for model directory 'preprocessing'"]
    (tmp_path / "build").mkdir()
    srv = Serve(bad, cwd=tmp_path)
    assert srv.wait_exit(timeout=240) == 2
    err = "".join(srv.err)
    assert all(w in err for w in want), err[-3000:]
    assert "Traceback" not in err.split("error:", 1)[-1].split("At:")[0]
    kept = Path(err.split("(server log: ", 1)[1].split(")", 1)[0])
    assert kept.is_file() and kept.parent == tmp_path / "build" / "triton" / "logs"
