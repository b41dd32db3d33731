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


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["frobnicate"], "No such command 'frobnicate'"),
        (["score"], "Missing argument"),
        (["score", "p.parquet", "-K", "x"], "Invalid value for '--seeds'"),
        (["prune", "s.parquet", "--nope"], "No such option: --nope"),
    ],
    ids=["unknown-command", "missing-argument", "malformed-number", "unknown-option"],
)
def test_usage_errors_are_one_line_exit_2(args, fragment):
    from conftest import run

    r = run(*args)
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert line.startswith("curate: error: ") and "\n" not in line and fragment in line, line
    assert "--help" in line


def _call(fn, capsys):
    import typer

    from curate.cli.app import handle_errors

    with pytest.raises(typer.Exit) as e:
        handle_errors(fn)()
    err = capsys.readouterr().err
    return e.value.exit_code, err


def test_filesystem_errors_are_input_errors(tmp_path, capsys):
    # Real errors from the OS, not constructed ones.
    def open_a_directory():
        open(tmp_path)

    def write_to_a_full_disk():
        with open("/dev/full", "w") as f:
            f.write("x")

    def under_a_file():
        (tmp_path / "f").write_text("x")
        open(tmp_path / "f" / "g", "w")

    def missing():
        open(tmp_path / "nope.jsonl")

    for fn, fragment in [
        (open_a_directory, f"{tmp_path}: is a directory"),
        (write_to_a_full_disk, "no space left on the device"),
        (under_a_file, "a part of this path is a file"),
        (missing, "nope.jsonl: no such file or directory"),
    ]:
        code, err = _call(fn, capsys)
        assert code == 2, (fn.__name__, err)
        assert err.startswith("curate: error: ") and err.count("\n") == 1 and fragment in err, err


def test_decoding_and_arrow_read_errors_are_input_errors(tmp_path, capsys):
    import pyarrow.json as pj

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a": 1}\n{"a": \n')
    code, err = _call(lambda: b"caf\xe9".decode("utf-8"), capsys)
    assert code == 2 and "not valid UTF-8" in err and "byte 3" in err, err
    code, err = _call(lambda: pj.read_json(bad), capsys)
    assert code == 2 and err.startswith("curate: error: could not read the input") and err.count("\n") == 1, err


def test_a_bug_is_exit_1_and_asks_for_a_report(capsys, monkeypatch):
    monkeypatch.delenv("CURATE_DEBUG", raising=False)
    code, err = _call(lambda: 1 / 0, capsys)
    assert code == 1 and err.count("\n") == 1
    assert "internal error (ZeroDivisionError: division by zero)" in err and "please report it" in err
    monkeypatch.setenv("CURATE_DEBUG", "1")
    code, err = _call(lambda: 1 / 0, capsys)
    assert code == 1 and "Traceback (most recent call last)" in err


def test_progress_bar_is_silent_off_a_terminal_and_can_stop_early(capsys):
    from curate import progress

    with progress.bar("epochs", total=10) as bar:
        bar.advance(3)
        bar.complete()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_reads_as_shell_syntax_not_python_types(command):
    import re

    out = runner.invoke(app, [*command, "--help"]).stdout
    usage = out.splitlines()[0]
    assert "{" not in usage and "}" not in usage, usage
    assert not re.search(r"<(str|int|float|path|bool)>", out), out
