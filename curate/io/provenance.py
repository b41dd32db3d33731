"""Provenance: what produced a file, recorded in its Parquet footer under the key ``curate``."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import curate

METADATA_KEY = b"curate"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash of a file, streamed so memory stays flat for large files."""
    from curate.io.fs import as_path  # here: pyarrow.fs, which `curate embed --help` need not wait for

    h = hashlib.sha256()
    with as_path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: str | Path) -> dict[str, Any]:
    """Path (a URI as given), size and content hash of one input file."""
    from curate.io.fs import as_path

    p = as_path(path)
    return {"path": str(p), "size": p.stat().st_size, "sha256": file_sha256(p)}


def command_line() -> list[str]:
    """The command line as the user typed it (argv[0] reduced to its name)."""
    argv = list(sys.argv)
    if argv:
        argv[0] = Path(argv[0]).name
    return argv


def base_record(step: str) -> dict[str, Any]:
    """Fields every output carries: tool version, step name and command line."""
    return {"tool": "curate", "version": curate.__version__, "step": step, "command": command_line()}


def config_hash(config: dict[str, Any]) -> str:
    """A stable hash of a JSON-able configuration (sorted keys), used for resume checks."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()
