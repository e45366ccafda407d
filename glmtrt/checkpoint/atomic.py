"""Atomic output directories: build in a temp dir beside the target, rename on success.

Nothing half-written is ever left at the output path: on any error the temp dir is removed.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


def check_output_dir(out: str | Path, force: bool) -> Path:
    """Refuse an existing output unless `force` (called before any work is done)."""
    out = Path(out)
    if out.exists() and not force:
        raise GlmtrtError(f"output {out} already exists", expected="a new directory",
                          fix="choose another -o/--output or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise GlmtrtError(f"output {out} exists and is not a directory")
    return out


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temp dir; on success it replaces `out` in one rename, on failure it vanishes."""
    out = check_output_dir(out, force).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)   # mkdtemp creates 0700; give the output normal permissions
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        hint = "free disk space" if exc.errno == errno.ENOSPC else "check permissions and the disk"
        raise GlmtrtError(f"writing {out} failed: {exc}; nothing was written", fix=hint) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.debug("wrote %s atomically", out)
