"""Atomic output directories: build in a temp dir beside the target, rename on success.

Nothing half-written is ever left at the output path: on any error the temp dir is removed,
and so it is on SIGTERM / SIGHUP / SIGINT (turned into an exception while the directory is
being written, so the cleanup runs; the process then exits 128 + signal). The temp dir is named
`.<name>.tmp-<pid>-<random>`: a later run writing the same output removes those whose owner
pid is dead (a SIGKILL or a power cut leaves them), never those of a live process.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from glmtrt.errors import GlmtrtError
from glmtrt.signals import SignalExit, raise_on_signals

log = logging.getLogger(__name__)

class Interrupted(SignalExit):
    """A stop signal arrived while an output was being written (exit status 128 + signum)."""


def check_output_dir(out: str | Path, force: bool) -> Path:
    """Refuse an existing output unless `force` (called before any work is done)."""
    out = Path(out)
    if out.exists() and not force:
        raise GlmtrtError(f"output {out} already exists", expected="a new directory",
                          fix="choose another -o/--output or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise GlmtrtError(f"output {out} exists and is not a directory")
    return out


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove `.<name>.tmp-<pid>-*` / `.<name>.old-<pid>-*` beside `out` whose owner pid is dead."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(?:tmp|old)-(\d+)-")
    removed = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.match(p.name)
        if m and p.is_dir() and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            log.warning("removed %s, left by an earlier run (pid %s) that did not finish", p, m.group(1))
            removed.append(p)
    return removed


def _os_error(out: Path, exc: OSError) -> GlmtrtError:
    if exc.errno == errno.ENOSPC:
        hint = "free disk space"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = f"write to a directory you may write to (-o elsewhere); {out.parent} is not writable"
    else:
        hint = "check permissions and the disk"
    return GlmtrtError(f"writing {out} failed: {exc}; nothing was written", fix=hint)


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temp dir; on success it replaces `out` in one rename, on failure (or a cleanup
    signal) it vanishes. An unwritable location is a GlmtrtError before any work is done."""
    out = check_output_dir(out, force).absolute()
    umask = os.umask(0)
    os.umask(umask)
    tmp = old = None
    try:
        with raise_on_signals(Interrupted):   # before the temp dir exists: no window without cleanup
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_temps(out)
                tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
                os.chmod(tmp, 0o777 & ~umask)   # mkdtemp creates 0700; give the output normal permissions
                yield tmp
                if out.exists():
                    old = out.parent / f".{out.name}.old-{os.getpid()}-{tmp.name.rsplit('-', 1)[-1]}"
                    out.rename(old)
                tmp.rename(out)
            except BaseException:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
    except OSError as exc:
        raise _os_error(out, exc) from exc
    except Interrupted as exc:
        log.warning("interrupted by %s: removed the unfinished %s", exc, tmp)
        raise SystemExit(128 + exc.signum) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.debug("wrote %s atomically", out)
