"""TritonServer and busy ports: an explicit busy port is a clear error; automatically picked
ports that got taken are replaced; a foreign server on our port is never mistaken for ours."""
from __future__ import annotations

import os
import socket

import pytest

from glmtrt.errors import GlmtrtError

pytestmark = [pytest.mark.triton]


@pytest.fixture()
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def _skip_unless_x86():
    pytest.importorskip("pytriton")
    if os.uname().machine != "x86_64":
        pytest.skip("nvidia-pytriton's tritonserver is x86_64 only")


def test_explicit_busy_port_is_a_clear_error(repo, busy_port):
    _skip_unless_x86()
    from glmtrt.triton.server import TritonServer, free_port

    srv = TritonServer(repo, grpc_port=busy_port, http_port=free_port(), metrics_port=free_port())
    with pytest.raises(GlmtrtError, match="could not bind"):
        srv.start()
    assert srv.pid is None


def test_auto_ports_are_retried(repo, busy_port, monkeypatch):
    _skip_unless_x86()
    from glmtrt.triton import server as server_mod

    srv = server_mod.TritonServer(repo)
    srv.grpc_port = busy_port                      # as if another process took it after the pick
    with srv:
        assert srv.grpc_port != busy_port and srv.is_ready()
        assert srv._owns_ports()
