"""Logging setup shared by the CLI and the library (library code only calls getLogger)."""
from __future__ import annotations

import logging
import os


def setup_logging(verbose: int = 0) -> None:
    """Configure the root `glmtrt` logger: INFO by default, DEBUG with -v."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    env = os.environ.get("GLMTRT_LOG_LEVEL")
    if env:
        level = getattr(logging, env.upper(), level)
    logger = logging.getLogger("glmtrt")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
