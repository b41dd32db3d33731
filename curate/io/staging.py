"""Local folders that hold an object-store output while it is written (see :mod:`curate.io.atomic`).

Each is ``curate-upload-<pid>-<random>`` in the temporary directory ($TMPDIR), so that one left by
a run killed with kill -9 (no cleanup ran) can be told apart: the next run that stages removes the
folders named so whose process is gone and that belong to this user, and nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "curate-upload-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-[a-z0-9_]+$")


def _alive(pid: int) -> bool:
    """True unless no process has this id (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists; anything else: do not guess
        return True
    return True


def clean_stale(root: str | Path | None = None) -> list[Path]:
    """Remove, from ``root`` (default: the temporary directory), the staging folders of curate
    runs that are no longer running; returns what was removed.

    Only a real directory (not a link) named ``curate-upload-<pid>-<random>``, owned by this
    user, whose pid is not a live process is removed. A pid reused by another process keeps its
    folder until that process ends (the safe side).
    """
    root = Path(root if root is not None else tempfile.gettempdir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    removed = []
    for p in entries:
        m = _NAME.match(p.name)
        if m is None or int(m.group(1)) == os.getpid():
            continue
        try:
            st = p.lstat()
        except OSError:
            continue
        if not p.is_dir() or p.is_symlink() or st.st_uid != os.getuid() or _alive(int(m.group(1))):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def make(root: str | Path | None = None) -> Path:
    """A new staging folder ``curate-upload-<this pid>-<random>`` in ``root`` (default: $TMPDIR),
    after removing the stale ones (:func:`clean_stale`)."""
    clean_stale(root)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
