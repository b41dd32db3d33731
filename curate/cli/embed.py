"""`curate embed`: raw text or images -> Parquet of ids, labels and embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from curate.cli import engine_options as eo
from curate.cli.app import app, emit, handle_errors
from curate.embed.backends import DEFAULT_BACKEND


def _human(s: dict) -> str:
    extra = f", {s['skipped']} skipped" if s["skipped"] else ""
    if s.get("dropped_unlabelled"):
        extra += f", {s['dropped_unlabelled']} unlabelled dropped"
    resumed = f" (resumed {s['resumed_shards']} shard(s))" if s["resumed_shards"] else ""
    return f"{s['output']}\t{s['rows']} rows x {s['dimension']} dims ({s['model']}){extra}{resumed}"


@app.command("embed")
@handle_errors
def embed_cmd(
    input: str = typer.Argument(..., metavar="INPUT", help="CSV/JSONL/Parquet file, directory or glob (or an s3:// URI to one); or an image folder root/<class>/<image>."),
    output: str = typer.Option(..., "-o", "--output", metavar="FILE", help="Output Parquet file (a path or an s3:// URI)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", metavar="COLUMN", help="Column holding the text to embed (an empty or null text is an error)."),
    image_column: Optional[str] = typer.Option(None, "--image-column", metavar="COLUMN", help="Column holding image paths, relative to the table's directory."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths", help="Let --image-column paths be absolute or leave the table's directory (only for tables you trust)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", metavar="COLUMN", help="Column holding the label (written as `label`, same type)."),
    drop_unlabelled: bool = typer.Option(False, "--drop-unlabelled", help="Skip rows whose label is null or NaN (counted in provenance) instead of failing."),
    id_column: Optional[str] = typer.Option(None, "--id-column", metavar="COLUMN", help="Column holding unique ids, read as text (default: <file>:<row>, or the image's relative path)."),
    keep_column: List[str] = typer.Option([], "--keep-column", metavar="COLUMN", help="Pass this column through to the output (repeatable)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="MODEL", help="sentence-transformers model: a local directory or a cached name (default: packaged all-MiniLM-L6-v2)."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Rows per forward pass, 1 to 65536."),
    image_size: int = typer.Option(224, "--image-size", metavar="PIXELS", help="Images are resized to this square size, 32 to 4096 (small images: 64-96)."),
    backend: str = typer.Option(DEFAULT_BACKEND, "--backend", metavar="auto|torch|onnx|onnx-int8|openvino", help="Text only: what runs the model. auto (default): onnx on the CPU, torch on a GPU; the backend that ran is recorded. torch: sentence-transformers; onnx: ONNX Runtime, same vectors as torch, faster on a CPU; onnx-int8: int8 weights, faster, mean cosine to torch about 0.99; openvino: OpenVINO, same vectors. Non-torch backends run on the CPU, from an ONNX export made once from the local model (the first run says so) and cached. Files from torch, onnx and openvino mix in later steps; onnx-int8 files mix only with onnx-int8 ones."),
    backend_cache: Optional[Path] = typer.Option(None, "--backend-cache", metavar="DIR", help="Where ONNX exports are kept (default: $CURATE_CACHE_DIR, else $XDG_CACHE_HOME/curate or ~/.cache/curate); a damaged entry is rebuilt."),
    normalize: bool = typer.Option(False, "--normalize/--no-normalize", help="L2-normalise text embeddings (all-MiniLM-L6-v2 already does)."),
    shard_size: int = typer.Option(4096, "--shard-size", metavar="N", help="Rows per resumable shard, 1 to 10000000."),
    engine: str = eo.ENGINE,
    workers: int = typer.Option(1, "--workers", metavar="N", help="Shards embedded concurrently, 1 to 256 (with --engine ray: actors, each loading the model once)."),
    ray_address: Optional[str] = eo.RAY_ADDRESS,
    cpus_per_worker: Optional[float] = eo.CPUS_PER_WORKER,
    gpus_per_worker: Optional[float] = eo.GPUS_PER_WORKER,
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", help="torch threads per worker, 1 to 1024 (default: all CPUs); recorded, as it can change the last bits."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda|cuda:N|mps", help="Where the model runs: auto (a GPU when one is visible), cpu, cuda, cuda:N or mps; recorded, as GPU kernels change the last bits."),
    on_error: str = typer.Option("raise", "--on-error", metavar="raise|skip", help="'raise' stops at a bad image or empty text; 'skip' records it and carries on."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Embed a text or image dataset into Parquet (id, label, embedding, passthrough columns).

    An interrupted run resumes from its finished shards when re-run with the same command.

    Example:

        curate embed data/train.jsonl --text-column text --label-column label -o work/train.parquet

        curate embed images/ --image-size 64 -o work/images.parquet

        curate embed data/train.jsonl --text-column text --engine ray --ray-address auto --workers 8 -o work/train.parquet
    """
    from curate.embed import EmbedConfig, embed
    from curate.runtime import Runtime

    cfg = EmbedConfig(
        text_column=text_column, image_column=image_column, label_column=label_column, id_column=id_column,
        keep_columns=tuple(keep_column), model=model, batch_size=batch_size, image_size=image_size,
        normalize=normalize, shard_size=shard_size, on_error=on_error,
        drop_unlabelled=drop_unlabelled, allow_outside_paths=allow_outside_paths,
        backend=backend, backend_cache=str(backend_cache) if backend_cache else None,
    )
    if backend not in ("torch", "auto") and device == "auto":
        device = "cpu"  # exported backends run on the CPU; auto would pick a visible GPU
    # --backend auto follows the device: embed() resolves it once --device auto has become a device.
    # Checked in the config's terms first, so a bad --workers/--threads/--engine reads as embed's own error.
    EmbedConfig(workers=workers, threads=threads, engine=engine)
    runtime = Runtime.build(device, threads=threads, engine=engine, workers=workers, ray_address=ray_address,
                            cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    emit(embed(input, output, cfg, overwrite=overwrite, runtime=runtime), json_out, _human)
