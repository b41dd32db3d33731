"""`curate embed`: raw text or images -> Parquet of ids, labels and embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from curate.cli.app import app, emit, handle_errors


def _human(s: dict) -> str:
    extra = f", {s['skipped']} skipped" if s["skipped"] else ""
    resumed = f" (resumed {s['resumed_shards']} shard(s))" if s["resumed_shards"] else ""
    return f"{s['output']}\t{s['rows']} rows x {s['dimension']} dims ({s['model']}){extra}{resumed}"


@app.command("embed")
@handle_errors
def embed_cmd(
    input: str = typer.Argument(..., help="CSV/JSONL/Parquet file, directory or glob; or an image folder root/<class>/<image>."),
    output: Path = typer.Option(..., "-o", "--output", help="Output Parquet file."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column holding the text to embed."),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="Column holding image paths (relative to the table)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Column holding the label (written as `label`)."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Column holding unique ids (default: <file>:<row>, or the image's relative path)."),
    keep_column: List[str] = typer.Option([], "--keep-column", help="Pass this column through to the output (repeatable)."),
    model: Optional[str] = typer.Option(None, "--model", help="sentence-transformers model: a local directory or a cached name (default: packaged all-MiniLM-L6-v2)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Rows per forward pass."),
    image_size: int = typer.Option(224, "--image-size", help="Images are resized to this square size (small images: 64-96)."),
    normalize: bool = typer.Option(False, "--normalize/--no-normalize", help="L2-normalise text embeddings (all-MiniLM-L6-v2 already does)."),
    shard_size: int = typer.Option(4096, "--shard-size", min=1, help="Rows per resumable shard."),
    workers: int = typer.Option(1, "--workers", min=1, help="Shards embedded concurrently in this process."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: all CPUs); recorded, as it can change the last bits."),
    on_error: str = typer.Option("raise", "--on-error", help="'raise' stops at a bad image or null text; 'skip' records it and carries on."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Embed a text or image dataset into Parquet (id, label, embedding, passthrough columns).

    An interrupted run resumes from its finished shards when re-run with the same command.

    Example:

        curate embed data/train.jsonl --text-column text --label-column label -o work/train.parquet

        curate embed images/ --image-size 64 -o work/images.parquet
    """
    from curate.embed import EmbedConfig, embed

    cfg = EmbedConfig(
        text_column=text_column, image_column=image_column, label_column=label_column, id_column=id_column,
        keep_columns=tuple(keep_column), model=model, batch_size=batch_size, image_size=image_size,
        normalize=normalize, shard_size=shard_size, workers=workers, threads=threads, on_error=on_error,
    )
    emit(embed(input, output, cfg, overwrite=overwrite), json_out, _human)
