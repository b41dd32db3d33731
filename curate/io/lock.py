"""An advisory lock per output, so that two runs writing the same path cannot both succeed.

The lock is ``fcntl.flock`` on ``.NAME.lock`` beside the output; it is held from the output
check until the output is committed (or the process ends) and the lock file is then removed.
A lock file left by a killed run holds no lock and is simply reused.

Object stores (``s3://``) have no lock: S3 offers no advisory lock a reader would honour, so
:func:`acquire` does nothing there. Two runs writing one object each commit a whole object;
the last to finish wins (see README, "Object storage").
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
from pathlib import Path

from curate.errors import InputError
from curate.io.fs import is_uri

_held: dict[Path, tuple[int, Path]] = {}


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def acquire(path: Path) -> None:
    """Lock output ``path`` for this process (re-entrant); InputError if another process holds it."""
    if is_uri(path):
        return
    key = path.resolve()
    if key in _held:
        return
    lp = lock_path(path)
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            try:
                pid = lp.read_text().strip() or "?"
            except OSError:
                pid = "?"
            raise InputError(
                f"another curate is writing {path} (pid {pid}); wait for it to finish or choose another output"
            ) from None
        # The holder may have removed the file between our open and flock: then we locked an
        # orphan inode, and must retry on the file now at that name.
        try:
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = (fd, lp)


def held(path: Path) -> bool:
    """Whether this process holds the lock of output ``path``."""
    if is_uri(path):
        return True  # nothing to take: see the module docstring
    return Path(path).resolve() in _held


def release(path: Path) -> None:
    """Unlock and remove the lock file of ``path`` if this process holds it."""
    if is_uri(path):
        return
    item = _held.pop(Path(path).resolve(), None)
    if item is None:
        return
    fd, lp = item
    # Unlink while still locked, so no one can lock the old inode after we let go.
    lp.unlink(missing_ok=True)
    os.close(fd)


def release_all() -> None:
    for key in list(_held):
        release(key)


atexit.register(release_all)
