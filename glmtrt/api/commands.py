"""`glmtrt openai`: the OpenAI-compatible endpoint over a Triton server (FastAPI + uvicorn).

Why not Triton's own OpenAI frontend (server repo python/openai, beta): it runs Triton
in-process through the `tritonserver` Python API on a `--model-repository` it loads itself
(docs: "OpenAI-Compatible Frontend for Triton Inference Server", 2.55 archive), so it cannot
front a Triton that already runs elsewhere (our 2xT4 split: engine on the GPU box, fronts on
another), and that in-process API needs the container's libtritonserver (it does not run from
PyPI here, ../shared/TRITON_CPU.md). A small FastAPI app over the asyncio gRPC client fronts
any reachable Triton and runs on any machine with Python.
"""
from __future__ import annotations

import ipaddress
import logging
import socket

import click

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to loopback addresses."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_exposure(host: str, api_key: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to listen beyond loopback without an API key unless explicitly allowed."""
    if api_key or allow_unauthenticated or is_loopback(host):
        return
    raise GlmtrtError(f"--host {host} is reachable from other machines and no --api-key is set",
                      expected="an API key for a non-loopback address",
                      fix="pass --api-key KEY (clients send 'Authorization: Bearer KEY'), or "
                          "--allow-unauthenticated if the network is trusted, or --host 127.0.0.1")


def register(group: click.Group) -> None:
    """Add `glmtrt openai`."""

    @group.command("openai")
    @click.option("--triton", "triton_url", default="127.0.0.1:8001", show_default=True,
                  help="Triton gRPC address (host:port).")
    @click.option("--model", default="ensemble", show_default=True, type=click.Choice(["ensemble", "tensorrt_llm_bls"]),
                  help="Triton model that generates.")
    @click.option("--served-model-name", default="glm", show_default=True, help="Model id clients send.")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
    @click.option("--api-key", envvar="GLMTRT_API_KEY", default=None,
                  help="Require 'Authorization: Bearer KEY' on /v1 (env GLMTRT_API_KEY).")
    @click.option("--allow-unauthenticated", is_flag=True, help="Allow a non-loopback --host without --api-key.")
    @click.option("--timeout", type=click.FloatRange(1, 86400), default=300.0, show_default=True,
                  help="Seconds one request may take at Triton before a 504.")
    def openai_cmd(triton_url, model, served_model_name, host, port, api_key, allow_unauthenticated, timeout):
        """Serve OpenAI's /v1/chat/completions, /v1/completions, /v1/models and /health over Triton."""
        check_exposure(host, api_key, allow_unauthenticated)
        if not served_model_name.strip():
            raise GlmtrtError("--served-model-name is empty", fix="give the id clients send, e.g. glm")
        try:
            import uvicorn

            from glmtrt.api.app import create_app
            from glmtrt.api.backend import TritonBackend
        except ImportError as exc:
            raise GlmtrtError(f"the API needs fastapi and uvicorn ({exc})", fix="pip install 'glmtrt[api]'") from exc
        click.echo(f"glmtrt openai: http://{host}:{port}/v1 -> Triton {triton_url} model {model}; "
                   f"served as {served_model_name!r}; api key {'required' if api_key else 'off'}; "
                   f"timeout {timeout:.0f} s")
        app = create_app(TritonBackend(triton_url, model=model, timeout=timeout),
                         served_model_name=served_model_name, api_key=api_key)
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
