"""`curate report`: score distributions, per-class summaries and examples as an HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from curate.cli.app import app, emit, handle_errors


@app.command("report")
@handle_errors
def report_cmd(
    scored: Path = typer.Argument(..., help="Parquet from `curate score`."),
    output: Path = typer.Option(..., "-o", "--output", help="HTML file to write (PNGs go to <name>_files/ beside it)."),
    source: Optional[Path] = typer.Option(None, "--source", help="Image folder the ids are relative to, for thumbnails."),
    examples: int = typer.Option(5, "--examples", min=0, help="Top and bottom examples shown per score."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that exist."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Write a self-contained HTML report: histograms with quantiles, per-class tables, rank correlations, examples.

    Example:

        curate report work/scored.parquet -o work/report.html
    """
    from curate.report import build

    emit(build(scored, output, source=source, n_examples=examples, overwrite=overwrite), json_out,
         lambda s: f"{s['output']}\t{s['rows']} rows, {len(s['columns'])} score columns; PNGs in {s['pngs']}")
