"""`glmtrt serve REPO`: run a CPU Triton on a python-backend repository and watch it; print (or
run) the official container command for a GPU repository.

Exit status: 0 after SIGTERM / SIGHUP / SIGINT (everything it started is stopped and removed
first), 2 for input errors and a repository that does not load (with the cause and the kept
server log), 3 when the server or one of its python stubs dies while serving (Triton would go on
answering ready while every request to that model fails: we stop and say so instead, so a
supervisor restarts us).
"""
from __future__ import annotations

import logging
import shlex
import subprocess
import time
from pathlib import Path

import click

log = logging.getLogger("glmtrt.triton.server")

EXIT_DIED = 3
_PORT = click.IntRange(1, 65535)


@click.command("serve")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--http-port", type=_PORT, default=8000, show_default=True)
@click.option("--grpc-port", type=_PORT, default=8001, show_default=True)
@click.option("--metrics-port", type=_PORT, default=8002, show_default=True)
@click.option("--ready-timeout", type=click.FloatRange(min=1.0), default=300.0, show_default=True,
              help="Seconds to wait for ready.")
@click.option("--health-interval", type=click.FloatRange(min=0.1, max=60.0), default=1.0, show_default=True,
              help="Seconds between checks that the server and its python stubs live.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the server log here and keep it (default: a temp file, kept only on failure).")
@click.option("--run", "run_gpu", is_flag=True, help="GPU repository: execute the container command.")
@click.option("--image", help="GPU repository: container image (default glmtrt:<profile>, built by "
                              "`make image GPU=<profile>`; it must have glmtrt installed).")
def serve(repo: Path, http_port: int, grpc_port: int, metrics_port: int, ready_timeout: float,
          health_interval: float, log_file: Path | None, run_gpu: bool, image: str | None) -> None:
    """Serve REPO with Triton: on CPU here (python backend), or print the GPU container command."""
    from glmtrt.triton import procs
    from glmtrt.triton.server import TritonServer, repository_backend

    backend = repository_backend(repo)
    if backend == "tensorrtllm":
        from glmtrt.triton.launch import gpu_command

        cmd = gpu_command(repo, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, image=image)
        log.info("the image must have glmtrt installed (the python models import it): `make image GPU=<profile>`")
        click.echo(" ".join(shlex.quote(c) for c in cmd))
        if run_gpu:
            log.info("running the container command")
            raise SystemExit(subprocess.call(cmd))
        return
    log.info("serving %s on CPU (tensorrt_llm backend: %s), health check every %.1f s",
             repo, backend or "none", health_interval)
    srv = TritonServer(repo, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                       ready_timeout=ready_timeout, log_file=log_file)
    with procs.stop_on_signals():
        try:
            with srv:
                click.echo(f"Triton ready: grpc {srv.grpc_url}  http {srv.http_url}  (Ctrl-C stops)")
                while True:
                    problem = srv.health()
                    if problem:
                        kept = srv.keep_log()
                        click.echo(f"error: {problem}; stopping the server (server log: {kept})", err=True)
                        raise SystemExit(EXIT_DIED)
                    time.sleep(health_interval)
        except procs.Stop as stop:
            click.echo(f"stopped ({stop}): server, stubs, shared memory and temp files removed", err=True)
