"""`curate embed`: not yet available (its issue has not landed)."""

from __future__ import annotations

import typer

from curate.cli.app import app, not_yet


@app.command("embed", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def embed(ctx: typer.Context) -> None:
    """Not yet available."""
    not_yet("embed")
