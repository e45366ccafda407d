"""The `glmtrt` command. Thin: each stage registers its commands from `<stage>/commands.py`.

Commands validate their input, log the resolved settings and call the library. A
GlmtrtError becomes a one-paragraph message and exit code 2, never a traceback.
"""
from __future__ import annotations

import importlib
import logging
import sys

import click

from glmtrt import __version__
from glmtrt.errors import GlmtrtError
from glmtrt.log import setup_logging

# Stage modules that contribute commands, in pipeline order.
_STAGES = (
    "glmtrt.convert.commands",   # inspect, convert, verify
    "glmtrt.build.commands",     # plan, build
    "glmtrt.triton.commands",    # repo (generate, --check)
    "glmtrt.triton.server",      # serve
    "glmtrt.client.commands",    # chat, generate, bench
    "glmtrt.api.commands",       # openai
    "glmtrt.ui.commands",        # ui
    "glmtrt.demo",               # demo
    "glmtrt.deploy.commands",    # deploy k8s
)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GlmtrtError as exc:
            logging.getLogger("glmtrt").debug("error detail", exc_info=True)
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="glmtrt")
@click.option("-v", "--verbose", count=True, help="More logging (-v: debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """GLM-family checkpoints -> TensorRT-LLM checkpoint -> engine -> Triton -> client."""
    ctx.obj = {"verbose": verbose}
    setup_logging(verbose)


for _name in _STAGES:
    importlib.import_module(_name).register(main)
