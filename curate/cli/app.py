"""The typer application object, the error boundary and output helpers shared by subcommands."""

from __future__ import annotations

import errno
import functools
import importlib
import json
import os
import sys
import traceback
from typing import Any, Callable

import typer
import typer.main
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer 0.29 vendors click
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import Abort

import curate
from curate import cancel
from curate.errors import CurateError

# Each subcommand's module, imported only when that command runs or shows its help: the modules
# pull in torch, polars, matplotlib..., which `curate --help` and usage errors must not wait for.
# The second field is the first line of the command's help, for `curate --help` (a test checks it).
COMMANDS = {
    "embed": ("curate.cli.embed", "Embed a text or image dataset into Parquet (id, label, embedding, passthrough columns)."),
    "score": ("curate.cli.score", "Score every example; columns are keyed by id and re-runs keep other methods' columns."),
    "prune": ("curate.cli.prune", "Keep the rows satisfying every --keep condition (and a --top/--fraction budget)."),
    "report": ("curate.cli.report", "Write an HTML report: embedding map, histograms with quantiles, per-class tables, "
                                    "rank correlations, examples."),
    "train": ("curate.cli.train", "Train a head on POOL, each step on the points of a big batch picked by reducible loss."),
    "il": ("curate.cli.il", "Irreducible-loss (IL) models for RHO-LOSS: train one on a holdout set, inspect one."),
}

class _Group(TyperGroup):
    """The root command: click's usage errors become the same one line as every other error.

    Subcommands load lazily (:data:`COMMANDS`): a command's module is imported when it is named.
    """

    def list_commands(self, ctx) -> list[str]:
        return list(dict.fromkeys([*COMMANDS, *self.commands]))

    def get_command(self, ctx, name: str):
        if name not in self.commands and name in COMMANDS:
            command = _load(name)
            if command is not None:
                self.commands[name] = command
        return self.commands.get(name)

    def format_commands(self, ctx, formatter) -> None:
        # The list in `curate --help` without importing every command: a bare command carrying only
        # its help line stands in for one not loaded yet (click shortens both the same way).
        loaded = self.commands
        try:
            self.commands = {n: loaded.get(n) or TyperCommand(n, help=COMMANDS[n][1]) for n in self.list_commands(ctx)}
            super().format_commands(ctx, formatter)
        finally:
            self.commands = loaded

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as e:
            if not standalone_mode:
                raise
            e.show()  # bare `curate` or `curate il`: the help is the answer, not an error line
            rv = e.exit_code
        except ClickException as e:
            if not standalone_mode:
                raise
            where = f" (see `{e.ctx.command_path} --help`)" if getattr(e, "ctx", None) else ""
            print(f"curate: error: {' '.join(e.format_message().split())}{where}", file=sys.stderr, flush=True)
            rv = e.exit_code
        except Abort:
            if not standalone_mode:
                raise
            print("curate: interrupted", file=sys.stderr, flush=True)
            rv = 130
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _load(name: str):
    """Import the module of subcommand ``name`` (it registers itself on :data:`app`); its click command."""
    importlib.import_module(COMMANDS[name][0])
    kw = {"pretty_exceptions_short": app.pretty_exceptions_short, "rich_markup_mode": app.rich_markup_mode}
    for info in app.registered_commands:
        if info.name == name:
            return typer.main.get_command_from_info(info, **kw)
    for info in app.registered_groups:
        if info.name == name:
            return typer.main.get_group_from_info(info, suggest_commands=app.suggest_commands, **kw)
    return None


def _plain_help() -> None:
    """Help in the shell's usual words: ``POOL`` and ``--output PATH``, not ``{pool}`` and ``<path>``.

    typer 0.29 writes required arguments as ``{name}`` and every value as its Python type
    (``<str>``, ``<int>``); users read those as syntax to type. Choices stay listed (``[linear|mlp]``).
    Applied once when the CLI is imported; typer is pinned below 0.30, and a test reads the help.
    """
    from typer import core

    def value_name(param, ctx) -> str:
        if param.metavar is not None:
            return param.metavar
        desc = param.type_descriptor
        if desc.is_choice:
            shown = param.display_type(ctx).strip("<>")
            if shown.startswith("list[") and shown.endswith("]"):  # a repeatable choice
                shown = shown[5:-1]
            return f"[{shown}]"
        if desc.is_path:
            return "PATH"
        bare = param.bare_type()
        return {"int": "INTEGER", "float": "NUMBER"}.get(bare, "TEXT")

    def argument_name(self) -> str:
        return self.metavar if self.metavar is not None else self.name.upper()

    def argument_usage(self) -> str:
        name = argument_name(self)
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def argument_type(self, ctx):  # the argument's name already says what it is
        desc = self.type_descriptor
        return value_name(self, ctx) if desc.is_choice else None

    def option_type(self, ctx):
        name = value_name(self, ctx)
        return name + ("..." if self.nargs != 1 else "")

    core.TyperArgument._usage_display_name = argument_usage
    core.TyperArgument._rich_display_name = lambda self: argument_name(self) + ("..." if self.nargs != 1 else "")
    core.TyperArgument.display_type_rich = argument_type
    core.TyperOption.display_type_rich = option_type


_plain_help()

app = typer.Typer(
    cls=_Group,
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


def _os_message(e: OSError) -> str:
    """One line for a filesystem error: the path, what happened, what to do."""
    where = f"{e.filename}: " if e.filename else ""
    if e.filename2:
        where = f"{e.filename} -> {e.filename2}: "
    if isinstance(e, PermissionError):
        return f"{where}permission denied; check its permissions or choose another path"
    if isinstance(e, IsADirectoryError):
        return f"{where}is a directory, expected a file"
    if isinstance(e, NotADirectoryError):
        return f"{where}a part of this path is a file, not a directory"
    if isinstance(e, FileNotFoundError):
        return f"{where}no such file or directory"
    if e.errno == errno.ENOSPC:
        return f"{where}no space left on the device; free some space or write the output elsewhere"
    if e.errno == errno.EROFS:
        return f"{where}read-only file system; write the output elsewhere"
    if e.errno == errno.EDQUOT:
        return f"{where}disk quota exceeded; free some space or write the output elsewhere"
    return f"{where}{e.strerror or e}"


def _is_bad_input(e: BaseException) -> bool:
    """pyarrow's read errors (bad CSV/JSON/Parquet content) are the input's fault, not a bug."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return False
    return isinstance(e, (pa.ArrowInvalid, pa.ArrowTypeError))


def handle_errors(fn: Callable) -> Callable:
    """Turn every error into one stderr line: exit 2 for what the user can fix, 1 for a bug.

    A bug's line asks for a report; ``CURATE_DEBUG=1`` prints the traceback as well. Output
    locks still held (a command that failed before its commit) are released on the way out.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CurateError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            print("curate: interrupted", file=sys.stderr, flush=True)
            raise typer.Exit(130)
        except (typer.Exit, SystemExit):
            raise
        except MemoryError:
            fail("out of memory; lower --batch-size or use fewer rows per shard", 1)
        except OSError as e:
            fail(_os_message(e), 2)
        except UnicodeDecodeError as e:
            fail(f"input is not valid UTF-8 ({e.reason} at byte {e.start}); convert the file to UTF-8", 2)
        except Exception as e:
            if _is_bad_input(e):
                fail(f"could not read the input: {e}", 2)
            if os.environ.get("CURATE_DEBUG"):
                traceback.print_exc()
            fail(
                f"internal error ({type(e).__name__}: {e}); this is a bug in curate {curate.__version__}: "
                "please report it to the curate maintainers with the command line (CURATE_DEBUG=1 shows the traceback)",
                1,
            )
        finally:
            # A command that took a lock imported the module; one that failed on its options did not,
            # and need not wait for it (it imports pyarrow).
            lock = sys.modules.get("curate.io.lock")
            if lock is not None:
                lock.release_all()

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


def main() -> None:  # console-script entry point
    # SIGTERM (sent by CI, `timeout`, kill) unwinds like Ctrl-C: every `finally` and every
    # temporary-file cleanup runs, then the process exits 143 (128 + SIGTERM), 130 for SIGINT.
    # The signal is also recorded (curate.cancel), so that one whose exception Python swallowed
    # (raised inside a __del__) still stops the run at its next batch or commit.
    cancel.install()
    try:
        app()
    except SystemExit as e:
        received = cancel.requested()
        if received is not None and e.code != 128 + received:
            # A signal arrived, so the run was killed, whatever way out it took: 0 if the exception was
            # swallowed after the last check, 1 if a library turned it into an error of its own (Ray
            # makes one raised inside `ray.get` SystemExit(1)).
            raise SystemExit(128 + received) from None
        raise
