"""`glmtrt ui`: the Streamlit web chat over a Triton server.

Thin: validate, print the URL, then become `streamlit run glmtrt/ui/app.py` (exec: the page
server is this process, so it dies with it). Settings reach the page as GLMTRT_UI_* variables.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)
APP = Path(__file__).with_name("app.py")


def metrics_url_for(triton: str, metrics: str | None) -> str | None:
    """The metrics URL: explicit, "none", or Triton's default layout (metrics port = gRPC port + 1)."""
    if metrics and metrics.lower() == "none":
        return None
    if metrics:
        return metrics if "://" in metrics else f"http://{metrics}/metrics"
    host, _, port = triton.rpartition(":")
    if not host or not port.isdigit():
        raise GlmtrtError(f"--triton {triton!r} is not host:port", expected="e.g. 127.0.0.1:8001")
    return f"http://{host}:{int(port) + 1}/metrics"


def streamlit_command(host: str, port: int) -> list[str]:
    """argv that serves the page headless on host:port."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host,
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "minimal"]


def ui_env(triton: str, metrics_url: str | None, model: str, temperature: float = 0.7,
           max_tokens: int = 256) -> dict[str, str]:
    """The page's settings as GLMTRT_UI_* variables (read by glmtrt/ui/app.py)."""
    env = dict(os.environ, GLMTRT_UI_TRITON=triton, GLMTRT_UI_MODEL=model, GLMTRT_UI_TEMPERATURE=str(temperature),
               GLMTRT_UI_MAX_TOKENS=str(max_tokens))
    env["GLMTRT_UI_METRICS"] = metrics_url or ""
    return env


def register(group: click.Group) -> None:
    """Add `glmtrt ui`."""

    @group.command("ui")
    @click.option("--triton", default="127.0.0.1:8001", show_default=True, help="Triton gRPC address (host:port).")
    @click.option("--metrics", default=None, help="Triton metrics URL (default: gRPC port + 1; 'none' to hide).")
    @click.option("--model", default="ensemble", show_default=True, type=click.Choice(["ensemble", "tensorrt_llm_bls"]))
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
    @click.option("--temperature", type=click.FloatRange(0.0, 2.0), default=0.7, show_default=True,
                  help="The page's default temperature (0 = greedy).")
    @click.option("--max-tokens", type=click.IntRange(1, 8192), default=256, show_default=True,
                  help="The page's default answer length.")
    def ui_cmd(triton, metrics, model, host, port, temperature, max_tokens):
        """Serve the web chat (Streamlit) for the Triton server at --triton."""
        try:
            import streamlit  # noqa: F401
        except ImportError as exc:
            raise GlmtrtError("the web chat needs streamlit", fix="pip install 'glmtrt[ui]'") from exc
        murl = metrics_url_for(triton, metrics)
        click.echo(f"glmtrt ui: http://{host}:{port}  (Triton {triton}, model {model}, metrics {murl or 'off'})")
        sys.stdout.flush()
        argv = streamlit_command(host, port)
        os.execve(argv[0], argv, ui_env(triton, murl, model, temperature, max_tokens))
