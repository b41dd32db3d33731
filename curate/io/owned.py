"""Which outputs curate wrote, so that ``--overwrite`` never replaces someone else's file.

Rule: a path is *ours* when it is
  - a Parquet file whose footer carries the ``curate`` key, or
  - a file or directory with a sidecar ``.NAME.curate`` beside it that curate wrote when it
    committed NAME; for a file the sidecar holds its sha256, so a file edited since is foreign, or
  - an empty file or an empty directory (nothing to lose).
Anything else is foreign and is never replaced or removed.

On an object store the sidecar is an object beside the output (``s3://b/dir/.NAME.curate``),
written in one request before and after the output's commit, as on a local disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from curate.io.fs import RemotePath, StorageError, open_input
from curate.io.provenance import METADATA_KEY, file_sha256


def sidecar(path: Path) -> Path:
    """The hidden record beside ``path`` saying curate wrote it."""
    return path.with_name(f".{path.name}.curate")


def _is_curate_parquet(path: Path | RemotePath) -> bool:
    try:
        if not isinstance(path, RemotePath):  # remote: the footer read below checks the magic bytes itself
            with open(path, "rb") as f:
                if f.read(4) != b"PAR1":
                    return False
        meta = pq.ParquetFile(open_input(path)).schema_arrow.metadata or {}
    except StorageError:
        raise  # an unreachable store says nothing about whose file this is
    except Exception:  # a damaged or non-Parquet file is simply not recognised as ours
        return False
    return METADATA_KEY in meta


def _write_sidecar(path: Path, record: dict) -> None:
    side = sidecar(path)
    if isinstance(side, RemotePath):
        side.write_text(json.dumps(record, sort_keys=True) + "\n")  # one request: whole or absent
        return
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(record, sort_keys=True) + "\n")
    os.replace(tmp, side)


def _read_sidecar(path: Path) -> dict:
    try:
        return json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        return {}


def record_pending(final: Path, staged: Path) -> None:
    """Before ``staged`` is renamed onto ``final``: accept both the old and the new content.

    Written before the rename, so that a kill between the two leaves ``final`` recognised either way.
    """
    if staged.is_dir():
        _write_sidecar(final, {"kind": "dir"})
    elif not _is_curate_parquet(staged):
        old = _read_sidecar(final).get("sha256", [])
        _write_sidecar(final, {"kind": "file", "sha256": [file_sha256(staged), *old[:1]]})


def record_done(final: Path | RemotePath, staged: Path | None = None) -> None:
    """After the rename: only the content now in ``final`` is ours.

    ``staged``: the local file just uploaded to the remote ``final`` (hashed here rather than
    downloading ``final`` again).
    """
    if staged is not None:
        if _is_curate_parquet(staged):
            forget(final)
        else:
            _write_sidecar(final, {"kind": "file", "sha256": [file_sha256(staged)]})
    elif final.is_file() and not _is_curate_parquet(final):
        _write_sidecar(final, {"kind": "file", "sha256": [file_sha256(final)]})
    elif final.is_file():
        forget(final)


def forget(path: Path) -> None:
    sidecar(path).unlink(missing_ok=True)


def is_ours(path: Path) -> bool:
    """True when curate may replace ``path`` (see the module docstring for the rule)."""
    if path.is_symlink():
        return False  # replacing a link would change what it points to for someone else
    if path.is_dir():
        if not (path.files() if isinstance(path, RemotePath) else any(path.iterdir())):
            return True
        return _read_sidecar(path).get("kind") == "dir"
    if path.is_file():
        if path.stat().st_size == 0 or _is_curate_parquet(path):
            return True
        rec = _read_sidecar(path)
        return rec.get("kind") == "file" and file_sha256(path) in rec.get("sha256", [])
    return False
