"""Helpers every test module shares: the CLI runner and the bad-input assertion.

Import them as ``from conftest import run, assert_fails, snapshot``: pytest puts this directory
on ``sys.path``, so the helpers are defined once instead of copied into each module.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from curate.cli import app

runner = CliRunner()


def run(*args):
    """Invoke ``curate ARGS...`` in-process; ``result.stdout`` and ``result.stderr`` are separate."""
    return runner.invoke(app, [str(a) for a in args])


def snapshot(root: str | Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256; links -> their target), for 'nothing new, nothing less'."""
    root = Path(root)
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + str(p.readlink())
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[rel] = "dir"
    return out


def assert_fails(args, *fragments, out: str | Path | None = None, root: str | Path | None = None, code: int = 2):
    """The command fails with one ``curate: error:`` line holding every fragment, exit ``code``.

    ``out``: a path that must not exist afterwards. ``root``: a directory whose files must be
    exactly as before (nothing new, nothing less, nothing changed).
    """
    before = snapshot(root) if root is not None else None
    r = run(*args)
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    line = r.stderr.strip()
    assert line.startswith("curate: error:") and "\n" not in line, line
    for f in fragments:
        assert f in line, (f, line)
    if out is not None:
        assert not Path(out).exists(), f"{out} was written"
    if before is not None:
        assert snapshot(root) == before, "the directory changed"
    return line
