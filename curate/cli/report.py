"""`curate report`: the page to look at first: embedding map, score distributions, GIO picks, duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from curate.cli.app import app, emit, handle_errors
from curate.report.limits import MAX_EXAMPLES, MAX_SAMPLE, MIN_SAMPLE


@app.command("report")
@handle_errors
def report_cmd(
    scored: Path = typer.Argument(..., help="Parquet from `curate score`."),
    output: Path = typer.Option(..., "-o", "--output", help="HTML file to write (.html); PNGs go to <name>_files/ beside it."),
    source: Optional[str] = typer.Option(
        None, "--source",
        help="The input that was embedded: a CSV/JSONL/Parquet table (file, directory or glob) for text snippets, "
             "or an image folder for thumbnails. An input that supplies none of the shown rows is an error."),
    examples: int = typer.Option(5, "--examples", help=f"Top and bottom examples shown per score, 0-{MAX_EXAMPLES}."),
    map_score: Optional[str] = typer.Option(None, "--map-score", help="Score column that colours the embedding map (default el2n, else the first)."),
    map_sample: int = typer.Option(5000, "--map-sample", help=f"Rows sampled for the embedding map, {MIN_SAMPLE}-{MAX_SAMPLE}."),
    seed: int = typer.Option(0, "--seed", help="Seed of the map's sample, 0-4294967295."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a report (and its PNG folder) that curate wrote."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Write an HTML report: embedding map, histograms with quantiles, per-class tables, rank correlations, examples.

    Example:

        curate report work/scored.parquet -o work/report.html --source data/news.jsonl
    """
    from curate.report import build

    emit(build(scored, output, source=source, n_examples=examples, overwrite=overwrite, map_score=map_score,
               map_sample=map_sample, seed=seed), json_out,
         lambda s: f"{s['output']}\t{s['rows']:,} rows, {len(s['columns'])} score columns; PNGs in {s['pngs']}")
