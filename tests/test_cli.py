"""The command-line shell: version, help with an example on every command, error boundary."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import curate
from curate.cli import app

runner = CliRunner()

COMMANDS = [["embed"], ["il", "train"], ["il", "info"], ["score"], ["prune"], ["report"], ["train"]]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"curate {curate.__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout, f"`curate {' '.join(command)} --help` shows no example"
    assert "curate " + command[0] in result.stdout


def test_unknown_command_is_a_usage_error():
    result = runner.invoke(app, ["frobnicate"])
    assert result.exit_code == 2


def test_console_script_runs_as_module():
    # The installed entry point and `python -m curate` are the same program.
    out = subprocess.run([sys.executable, "-m", "curate", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"curate {curate.__version__}"


def test_outputs_get_ordinary_permissions(tmp_path):
    import os

    from curate.io.atomic import atomic_dir, atomic_path

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
