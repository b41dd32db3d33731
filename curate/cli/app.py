"""The typer application object, the error boundary and output helpers shared by subcommands."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import typer

import curate
from curate.errors import CurateError

app = typer.Typer(
    name="curate",
    help=(
        "Score every training example and keep the useful ones.\n\n"
        "Pipeline: embed -> il train -> score -> prune (and report to look before you cut)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"curate {curate.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Score every training example and keep the useful ones."""


def fail(message: str, code: int) -> None:
    """Print one error line on stderr and exit with ``code``."""
    print(f"curate: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn library errors into one stderr line and the documented exit codes (2 input, 1 failure)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CurateError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            print("curate: interrupted", file=sys.stderr, flush=True)
            raise typer.Exit(130)
        except typer.Exit:
            raise
        except MemoryError:
            fail("out of memory; lower --batch-size or use fewer rows per shard", 1)

    return wrapper


def emit(summary: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str] | None = None) -> None:
    """Write the result on stdout: JSON with ``--json``, else a short human summary."""
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True, default=str))
    elif human is not None:
        typer.echo(human(summary))
    else:
        for k, v in summary.items():
            typer.echo(f"{k}: {v}")


def not_yet(name: str) -> None:
    fail(f"`curate {name}` is not yet available in this version", 2)


def main() -> None:  # console-script entry point
    app()
