"""`curate --help` and usage errors do not wait for torch: subcommands are imported when named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperCommand

from curate.cli import app
from curate.cli.app import COMMANDS

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sentence_transformers", "polars", "matplotlib", "faiss", "ray", "pyarrow")


def _imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint('imported:', *(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    return r.stderr.splitlines()[-1].split()[1:]


def test_importing_the_cli_imports_no_heavy_module():
    assert _imported_after("import curate.cli.app") == []


@pytest.mark.parametrize("argv", [["--help"], ["nosuch"], ["prune", "--help"], ["il", "train", "--help"],
                                  ["train", "--steps", "x", "p.parquet", "-o", "o"]],
                         ids=["help", "unknown-command", "prune-help", "il-train-help", "train-bad-option"])
def test_help_and_usage_errors_import_no_heavy_module(argv):
    code = f"import sys\nsys.argv = ['curate', *{argv!r}]\nfrom curate.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listed_help_line_is_the_commands_own(name):
    group = typer.main.get_command(app)
    with group.make_context("curate", ["--version"], resilient_parsing=True) as ctx:
        real = group.get_command(ctx, name)
    stand_in = TyperCommand(name, help=COMMANDS[name][1])
    for limit in (30, 45, 80, 200):
        assert stand_in.get_short_help_str(limit) == real.get_short_help_str(limit)
