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


def _run_cli(argv: list[str]) -> str:
    return f"import sys\nsys.argv = ['curate', *{argv!r}]\nfrom curate.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"


@pytest.mark.parametrize("argv", [["--help"], ["nosuch"], ["prune", "--help"], ["il", "train", "--help"],
                                  ["train", "--steps", "x", "p.parquet", "-o", "o"], ["embed", "--help"],
                                  ["score", "--help"], ["report", "--help"]],
                         ids=["help", "unknown-command", "prune-help", "il-train-help", "train-bad-option",
                              "embed-help", "score-help", "report-help"])
def test_help_and_usage_errors_import_no_heavy_module(argv):
    assert _imported_after(_run_cli(argv)) == []


@pytest.mark.parametrize("argv, error", [
    (["score", "p.parquet", "-o", "o", "-m", "el2n", "--seeds", "0"], "curate: error: --seeds 0: expected an integer in [1, 1000]"),
    (["score", "p.parquet", "-o", "o", "-m", "el2n", "--dropout", "1"], "curate: error: --dropout"),
    (["score", "p.parquet", "-o", "o", "-m", "el2n", "--gio-k", "0"], "curate: error: --gio-k 0"),
], ids=["seeds", "dropout", "gio-k"])
def test_a_bad_score_number_fails_before_any_heavy_import(argv, error):
    probe = f"{_run_cli(argv)}\nprint('imported:', *(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = r.stderr.splitlines()
    assert lines[0].startswith(error), r.stderr
    assert lines[-1] == "imported:"


def test_the_method_catalog_is_the_registry():
    from curate.scores.catalog import SUMMARIES, MethodName
    from curate.scores.registry import METHODS

    assert list(SUMMARIES.items()) == [(name, m.summary) for name, m in METHODS.items()]
    assert [m.value for m in MethodName] == list(METHODS)


def test_the_light_config_names_are_the_code_s():
    from curate.models import config, heads, train

    assert config.OPTIMIZER_NAMES == tuple(train.OPTIMIZERS)
    assert heads.HeadSpec is config.HeadSpec and train.TrainConfig is config.TrainConfig


def test_lazy_package_exports_are_the_functions():
    code = ("import curate.report, curate.embed\nfrom curate.report import build\nfrom curate.embed import embed, EmbedConfig\n"
            "import curate.report.build\nassert callable(build) and build.__module__ == 'curate.report.build', build\n"
            "assert curate.report.build is build and embed.__module__ == 'curate.embed.runner'\n"
            "assert EmbedConfig.__module__ == 'curate.embed.config'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listed_help_line_is_the_commands_own(name):
    group = typer.main.get_command(app)
    with group.make_context("curate", ["--version"], resilient_parsing=True) as ctx:
        real = group.get_command(ctx, name)
    stand_in = TyperCommand(name, help=COMMANDS[name][1])
    for limit in (30, 45, 80, 200):
        assert stand_in.get_short_help_str(limit) == real.get_short_help_str(limit)
