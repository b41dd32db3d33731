"""A run's private temporary files and folders, named so that those of a killed run can be removed.

Each is ``curate-<kind>-<pid>-<random>`` in the temporary directory ($TMPDIR): ``upload``
folders hold an object-store output while it is written (:mod:`curate.io.atomic`),
``embeddings`` folders the float32 matrix that training and scoring read (n x d x 4 bytes:
15 GB at 10M x 384), ``column`` files (``.bin``) score columns written row range by row range.
A run that ends in any way Python sees removes its own; one killed with kill -9 (the kernel's
out-of-memory killer included) cannot, so every run that makes one first removes those whose
process is gone and that belong to this user, and nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

# kind -> is it a folder (else a file with the suffix ".bin")
KINDS = {"upload": True, "embeddings": True, "column": False}
_NAME = re.compile(r"^curate-(upload|embeddings|column)-(\d+)-[a-z0-9_]+(\.bin)?$")


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
    """Remove, from ``root`` (default: the temporary directory), the scratch files and folders of
    curate runs that are no longer running; returns what was removed.

    Only an entry named as this module names them (a real folder for ``upload`` and
    ``embeddings``, a regular ``.bin`` file for ``column``; never a link), owned by this user, whose
    pid is not a live process is removed. A pid reused by another process keeps its entry until
    that process ends (the safe side).
    """
    root = Path(root if root is not None else tempfile.gettempdir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    removed = []
    for p in entries:
        m = _NAME.match(p.name)
        if m is None or int(m.group(2)) == os.getpid():
            continue
        folder = KINDS[m.group(1)]
        if folder == bool(m.group(3)):  # a folder named like a file, or the reverse: not ours
            continue
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_symlink() or not (p.is_dir() if folder else p.is_file()):
            continue
        if st.st_uid != os.getuid() or _alive(int(m.group(2))):
            continue
        if folder:
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def make_dir(kind: str, root: str | Path | None = None) -> Path:
    """A new private folder ``curate-<kind>-<this pid>-<random>`` in ``root`` (default: $TMPDIR),
    after removing the stale ones (:func:`clean_stale`)."""
    assert KINDS[kind]
    clean_stale(root)
    return Path(tempfile.mkdtemp(prefix=f"curate-{kind}-{os.getpid()}-", dir=root))


def make_file(kind: str, root: str | Path | None = None) -> tuple[int, Path]:
    """(open descriptor, path) of a new private file ``curate-<kind>-<this pid>-<random>.bin`` in
    ``root`` (default: $TMPDIR), after removing the stale ones (:func:`clean_stale`)."""
    assert not KINDS[kind]
    clean_stale(root)
    fd, path = tempfile.mkstemp(prefix=f"curate-{kind}-{os.getpid()}-", suffix=".bin", dir=root)
    return fd, Path(path)
