"""Write-then-rename, so that an interrupted or failed step never leaves a partial output.

Temporary names are ``.NAME.curate-<8 random characters>.tmp`` beside the output NAME: they carry the output's
name, so the next run on NAME recognises and removes what a killed run left. A step with several
outputs commits them through :func:`atomic_group`: all or none, with a journal for recovery.

Test hook: ``CURATE_TEST_PAUSE_BEFORE_COMMIT=SECONDS`` sleeps just before each final rename and
``CURATE_TEST_PAUSE_BETWEEN_RENAMES=SECONDS`` between the renames of a group (only for the output
named ``CURATE_TEST_PAUSE_PATH`` when that is set), announcing it on stderr, so that tests can
send a signal at the worst moment; with ``CURATE_TEST_PAUSE_IN_DEL=1`` that sleep runs inside a
``__del__``, where Python swallows the exception a signal handler raises. Unset in normal use.

Every commit first calls :func:`curate.cancel.check`: a run that received SIGTERM or SIGINT
never renames or uploads its output, even if the handler's exception was swallowed.

Object stores (``s3://...``, see :mod:`curate.io.fs`) have no rename: an output is written to a
local temporary file (in a :mod:`curate.io.scratch` folder), uploaded under
``<parent>/.curate-tmp-<NAME>/`` and copied onto NAME in one server-side request, so NAME is either the old object or the whole new one. The temporary
prefix is removed on success, on failure and by the next run's :func:`check_output`. There is
no lock there, and a group (``-o`` with ``--dropped``) is committed one object after the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from curate import cancel
from curate.errors import InputError
from curate.io import lock, owned, scratch
from curate.io.fs import RemotePath, as_path

_TMP = "curate-"


class _Pause:
    """Test hook only: announce, then sleep; in ``__del__`` with CURATE_TEST_PAUSE_IN_DEL (the frame
    where a signal's exception is swallowed), the announcement made there too, so a signal sent on
    reading it lands inside."""

    def __init__(self, line: str, seconds: float):
        self.line, self.seconds = line, seconds

    def __call__(self) -> None:
        print(self.line, file=sys.stderr, flush=True)
        # Short sleeps: a signal that another thread (torch's) received interrupts no sleep here,
        # and its handler runs only when this thread next runs Python code.
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            time.sleep(0.05)

    def __del__(self):
        if os.environ.get("CURATE_TEST_PAUSE_IN_DEL"):
            self()


def _pause(var: str, *paths: Path) -> None:
    seconds = os.environ.get(var)
    only = os.environ.get("CURATE_TEST_PAUSE_PATH")
    if seconds and (not only or any(p.name == only for p in paths)):
        pause = _Pause(f"curate: test hook: {var} {paths[0]}", float(seconds))
        if not os.environ.get("CURATE_TEST_PAUSE_IN_DEL"):
            pause()
        del pause  # with CURATE_TEST_PAUSE_IN_DEL, the pause runs here, in __del__


def _stale_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}\.{_TMP}[A-Za-z0-9_]+\.tmp$")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _journal(path: Path) -> Path:
    return path.with_name(f".{path.name}.{_TMP}journal.json")


def clean_leftovers(path: Path) -> None:
    """Finish or undo an interrupted group commit on ``path``, then remove its stale temporaries.

    Call only while holding the output's lock: then no temporary of ``path`` can be in use.
    """
    if isinstance(path, RemotePath):
        path.staging().rmtree()
        return
    j = _journal(path)
    if j.exists():
        _recover(j)
    if path.parent.is_dir():
        pat = _stale_pattern(path.name)
        for p in path.parent.iterdir():
            if pat.match(p.name):
                _remove(p)
        # Left by an older version's directory swap, and by a killed sidecar write.
        _remove(path.with_name(f".{path.name}.old"))
        _remove(path.with_name(f".{path.name}.curate.tmp"))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output(path: str | Path, overwrite: bool, *, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Validate output ``path`` before any work; lock it and clean what a killed run left.

    Errors (InputError) when: ``path`` equals (or is a directory holding) one of ``inputs``
    (symlinks resolved); it exists and ``overwrite`` is off; it exists, ``overwrite`` is on and
    curate did not write it (see :mod:`curate.io.owned`); its parent is a file or not writable;
    or another curate process is writing it.
    """
    path = as_path(path)
    if isinstance(path, RemotePath):
        return _check_remote_output(path, overwrite, inputs)
    if path.name in ("", ".", ".."):
        raise InputError(f"{path}: not a valid output name; give a file or directory name")
    target = path.resolve()
    for src in inputs:
        if src is None:
            continue
        src_r = as_path(src).resolve()
        if _inside(src_r, target):
            raise InputError(f"{path}: output is the input {src}; choose another output path")
    parent = path.parent
    for anc in [parent, *parent.parents]:
        if anc.exists():
            if not anc.is_dir():
                raise InputError(f"{path}: {anc} is a file, not a directory; choose another output path")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise InputError(f"{path}: directory {anc} is not writable; choose another output path")
            break
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
        if not owned.is_ours(path):
            raise InputError(
                f"{path}: exists and was not written by curate (or was changed since); "
                "--overwrite only replaces curate's own outputs: remove it yourself or choose another path"
            )
    parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire(path)
    except OSError as e:  # e.g. root in an immutable directory, a read-only mount, a full disk
        raise InputError(f"{path}: cannot write in {parent} ({e.strerror}); choose another output path") from None
    clean_leftovers(path)
    return path


def _check_remote_output(path: RemotePath, overwrite: bool, inputs) -> RemotePath:
    """:func:`check_output` for an object: same refusals, no lock (see the module docstring)."""
    if not path.key or path.name in (".", ".."):
        raise InputError(f"{path}: not a valid output name; give an object key such as s3://bucket/dir/out.parquet")
    for src in inputs:
        if src is not None and _inside(as_path(src), path):
            raise InputError(f"{path}: output is the input {src}; choose another output path")
    if not path.bucket_exists():
        raise InputError(f"{path}: the bucket {path.bucket!r} does not exist (or is not visible with these "
                         "credentials); create it or check the URI")
    if path.exists():
        if not overwrite:
            raise InputError(f"{path}: output already exists; pass --overwrite to replace it")
        if not owned.is_ours(path):
            raise InputError(
                f"{path}: exists and was not written by curate (or was changed since); "
                "--overwrite only replaces curate's own outputs: remove it yourself or choose another path"
            )
    clean_leftovers(path)
    return path


def check_distinct(*paths: str | Path | None) -> None:
    """Two outputs of one command must not be the same path (symlinks resolved)."""
    seen: dict = {}
    for p in paths:
        if p is None:
            continue
        r = as_path(p).resolve()
        for other_r, other in seen.items():
            if _inside(r, other_r) or _inside(other_r, r):
                raise InputError(f"{p}: same output path as {other}; give each output its own path")
        seen[r] = p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_temp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp") and f".{_TMP}" in path.name


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` onto ``path``; an existing directory is moved aside first and removed after."""
    cancel.check()  # SIGTERM/SIGINT received, even if swallowed: never commit
    if not _is_temp(path):
        owned.record_pending(path, tmp)
    if path.is_dir() and not path.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_TMP}", suffix=".tmp", dir=path.parent))
        os.rmdir(old)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    if not _is_temp(path):
        owned.record_done(path)
    lock.release(path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``path``, else remove it.

    The temporary file sits in the same directory so the final rename is atomic on POSIX.
    For an object (:class:`RemotePath`) it is a local file, uploaded as the module docstring says.
    """
    path = as_path(path)
    if isinstance(path, RemotePath):
        with _remote_atomic_path(path) as tmp:
            yield tmp
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_TMP}", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the result the permissions an ordinary open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        _pause("CURATE_TEST_PAUSE_BEFORE_COMMIT", path)
        _swap_in(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for a directory: build it aside, then swap it in."""
    path = as_path(path)
    if isinstance(path, RemotePath):
        raise InputError(f"{path}: folder outputs on object storage are not supported; write the folder locally and copy it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_TMP}", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _pause("CURATE_TEST_PAUSE_BEFORE_COMMIT", path)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_group(paths: Iterable[str | Path]) -> Iterator[list[Path]]:
    """Commit several outputs together: all are replaced, or none.

    Yields one temporary path per output (not yet existing: create a file or a directory there,
    e.g. with ``atomic_path(tmp)`` / ``atomic_dir(tmp)``, or leave it absent to write nothing).
    When the block ends, a journal is written beside every output, each existing output is moved
    aside, every temporary renamed onto its output, then the old ones and the journals removed.
    A run killed in between is undone by the next :func:`check_output` on any of the outputs
    (the outputs are then as before the command), unless every rename had happened (then kept).
    """
    finals = [as_path(p) for p in paths]
    check_distinct(*finals)
    if any(isinstance(p, RemotePath) for p in finals):
        with _remote_group(finals) as tmps:
            yield tmps
        return
    pairs = []
    for p in finals:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.{_TMP}", suffix=".tmp", dir=p.parent))
        os.rmdir(tmp)  # reserve the name only; the caller creates a file or a directory
        pairs.append((tmp, p))
    journal = None
    try:
        yield [t for t, _ in pairs]
        staged = [(t, p) for t, p in pairs if t.exists() or t.is_symlink()]
        for t, _ in staged:
            os.chmod(t, (0o777 if t.is_dir() else 0o666) & ~_umask())
        entries = []
        for t, p in staged:
            bak = Path(tempfile.mkdtemp(prefix=f".{p.name}.{_TMP}", suffix=".tmp", dir=p.parent))
            os.rmdir(bak)
            entries.append({"tmp": str(t.resolve()), "final": str(p.resolve()), "backup": str(bak.resolve())})
        blob = json.dumps({"pairs": entries}, sort_keys=True)
        for _, p in staged:
            _journal(p).write_text(blob)  # the commit point: from here recovery can finish or undo
        journal = _journal(staged[0][1]) if staged else None
        _pause("CURATE_TEST_PAUSE_BEFORE_COMMIT", *(p for _, p in staged))
        for i, (t, p) in enumerate(staged):
            cancel.check()  # a signal received (even if swallowed): undo below, commit nothing
            owned.record_pending(p, t)
            if p.exists() or p.is_symlink():
                os.replace(p, entries[i]["backup"])
            os.replace(t, p)
            if i == 0:
                _pause("CURATE_TEST_PAUSE_BETWEEN_RENAMES", *(p for _, p in staged))
        for i, (_, p) in enumerate(staged):
            _remove(Path(entries[i]["backup"]))
            owned.record_done(p)
        for _, p in staged:
            _journal(p).unlink(missing_ok=True)
            lock.release(p)
    except BaseException:
        if journal is not None and journal.exists():
            _recover(journal)  # interrupted among the renames (e.g. SIGTERM): undo now, not on the next run
        for t, _ in pairs:
            _remove(t)
        raise


def _recover(journal: Path) -> None:
    """Undo an interrupted group commit (or finish it when every rename had already happened)."""
    try:
        entries = json.loads(journal.read_text())["pairs"]
    except (OSError, ValueError, KeyError):
        journal.unlink(missing_ok=True)
        return
    # Every output of the group must be ours to touch: lock them all (fails if a live run holds one).
    taken = [Path(e["final"]) for e in entries if not lock.held(Path(e["final"]))]
    for f in taken:
        lock.acquire(f)
    done = all(not Path(e["tmp"]).exists() for e in entries)
    for e in reversed(entries):
        tmp, final, bak = Path(e["tmp"]), Path(e["final"]), Path(e["backup"])
        if not done:
            if not tmp.exists():
                _remove(final)  # the new output had been renamed in: take it out again
            if bak.exists():
                os.replace(bak, final)
            _remove(tmp)
        else:
            _remove(bak)
        owned.record_done(final) if final.exists() else owned.forget(final)
    for e in entries:
        _journal(Path(e["final"])).unlink(missing_ok=True)
    for f in taken:
        lock.release(f)


def _clean_staging(path: RemotePath) -> None:
    # Best effort while unwinding: the next run's check_output removes what is left, and an
    # unreachable store must not hide the error that got us here.
    with contextlib.suppress(InputError, OSError):
        path.staging().rmtree()


def _commit_remote(tmp: Path, path: RemotePath) -> None:
    """Upload the local file ``tmp`` onto ``path`` (whole or not at all) and record it as curate's."""
    if tmp.is_dir():
        raise InputError(f"{path}: folder outputs on object storage are not supported; write the folder locally and copy it")
    _pause("CURATE_TEST_PAUSE_BEFORE_COMMIT", path)
    cancel.check()  # SIGTERM/SIGINT received, even if swallowed: never commit (upload checks again)
    owned.record_pending(path, tmp)
    path.upload(tmp)
    owned.record_done(path, staged=tmp)


@contextlib.contextmanager
def _remote_atomic_path(path: RemotePath) -> Iterator[Path]:
    stage = scratch.make_dir("upload")  # curate-upload-<pid>-*: a kill -9 leftover is removed by a later run
    try:
        tmp = stage / path.name
        yield tmp
        _commit_remote(tmp, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        _clean_staging(path)


@contextlib.contextmanager
def _remote_group(finals: list) -> Iterator[list[Path]]:
    """:func:`atomic_group` when some outputs are objects: each is committed whole, one after the other."""
    stage = scratch.make_dir("upload")  # curate-upload-<pid>-*: a kill -9 leftover is removed by a later run
    tmps = []
    for i, p in enumerate(finals):
        if isinstance(p, RemotePath):
            tmps.append(stage / f"{i}-{p.name}")
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            t = Path(tempfile.mkdtemp(prefix=f".{p.name}.{_TMP}", suffix=".tmp", dir=p.parent))
            os.rmdir(t)
            tmps.append(t)
    try:
        yield tmps
        for t, p in zip(tmps, finals):
            if not (t.exists() or t.is_symlink()):
                continue
            if isinstance(p, RemotePath):
                _commit_remote(t, p)
            else:
                os.chmod(t, (0o777 if t.is_dir() else 0o666) & ~_umask())
                _swap_in(t, p)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        for t, p in zip(tmps, finals):
            if isinstance(p, RemotePath):
                _clean_staging(p)
            else:
                _remove(t)
