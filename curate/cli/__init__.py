"""The ``curate`` command line: a thin typer layer over the library.

Each subcommand lives in its own module and registers itself on :data:`app` when it is imported;
the root command imports a subcommand's module only when that command is named
(``curate.cli.app.COMMANDS``), so that ``curate --help`` and usage errors are quick.
"""

from __future__ import annotations

from curate.cli.app import app, main  # noqa: F401
