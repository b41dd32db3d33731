"""The ``curate`` command line: a thin typer layer over the library.

Each subcommand lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

from curate.cli.app import app, main  # noqa: F401

# Importing the command modules registers them on the app.
from curate.cli import embed, il, score, prune, report  # noqa: E402,F401
from curate.cli import train  # noqa: E402,F401
