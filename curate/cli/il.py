"""`curate il`: train, inspect and load irreducible-loss models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from curate.cli.app import app, emit, handle_errors

il_app = typer.Typer(help="Irreducible-loss (IL) models for RHO-LOSS: train one on a holdout set, inspect one.",
                     no_args_is_help=True, rich_markup_mode=None)
app.add_typer(il_app, name="il")


@il_app.command("train")
@handle_errors
def train_cmd(
    holdout: Path = typer.Argument(..., metavar="HOLDOUT.parquet", help="Parquet from `curate embed` with labels: the holdout set (or the pool with --cross-fit)."),
    output: Path = typer.Option(..., "-o", "--output", help="Model directory to write."),
    cross_fit: bool = typer.Option(False, "--cross-fit", help="No holdout: HOLDOUT is the pool; train one model per class-balanced half."),
    arch: str = typer.Option("mlp", "--arch", help="Head architecture: linear or mlp."),
    hidden: List[int] = typer.Option([256], "--hidden", metavar="N", help="MLP hidden sizes, 1 to 65,536 (repeat for depth)."),
    depth: Optional[int] = typer.Option(None, "--depth", help="MLP hidden layers (1 to 64), all of the first --hidden size."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout after each hidden layer (training only), in [0, 1)."),
    epochs: int = typer.Option(100, "--epochs", help="Maximum epochs, 1 to 1,000,000."),
    patience: int = typer.Option(5, "--patience", help="Stop after this many epochs (>= 1) without a lower validation loss."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Class-stratified share of the holdout used for validation, in (0, 1)."),
    batch_size: int = typer.Option(128, "--batch-size", help="Rows per step, 1 to 16,777,216."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate, > 0."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay, >= 0 (PyTorch's default 0.01)."),
    seed: int = typer.Option(0, "--seed", help="Seed, 0 to 4,294,967,295."),
    threads: int = typer.Option(1, "--threads", help="Torch threads, 1 to 1024. Default 1: a small head gains little from more, "
                                "and slows down several-fold when other jobs share the cores (benchmarks/bench_threads.py)."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when one is visible), cpu, cuda, cuda:N or mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Train an IL model: AdamW, keep the epoch with the lowest validation loss.

    Example:

        curate il train work/holdout.parquet -o work/il/

        curate il train work/train.parquet --cross-fit -o work/il-crossfit/
    """
    from curate.cli import train_options as opt
    from curate.il import ILConfig, train_cross_fit, train_il
    from curate.models.heads import HeadSpec
    from curate.models.train import TrainConfig
    from curate.runtime import Runtime

    hid = opt.head_options(hidden, depth, dropout, lr, weight_decay, seed)
    opt.int_range("--epochs", epochs, 1, opt.MAX_EPOCHS)
    opt.int_range("--patience", patience, 1, opt.MAX_EPOCHS)
    opt.int_range("--batch-size", batch_size, 1, opt.MAX_BATCH)
    opt.open_unit("--val-fraction", val_fraction)
    runtime = Runtime.build(device, threads=opt.threads_option(threads))
    cfg = ILConfig(spec=HeadSpec(arch=arch, hidden=hid, dropout=dropout),
                   train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay),
                   val_fraction=val_fraction, patience=patience, seed=seed)
    config = (train_cross_fit if cross_fit else train_il)(holdout, output, cfg, overwrite=overwrite, runtime=runtime)
    summary = {"output": str(output), "kind": config["kind"], "labels": len(config["labels"]),
               "chosen_epoch": config["chosen_epoch"], "val_loss": config["val_loss"],
               "val_accuracy": config.get("val_accuracy")}
    emit(summary, json_out, lambda s: f"{s['output']}\t{s['kind']}, {s['labels']} labels, epoch {s['chosen_epoch']}, val loss {s['val_loss']}")


@il_app.command("info")
@handle_errors
def info_cmd(
    model: Path = typer.Argument(..., metavar="IL_DIR", help="IL model directory (or TorchScript file)."),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="Load a TorchScript file to read its dimension. "
                                           "Loading executes code stored inside the file: only for files you trust."),
    json_out: bool = typer.Option(False, "--json", help="Print everything as JSON."),
) -> None:
    """Print what an IL model holds: architecture, labels, chosen epoch, validation metrics, hash.

    A TorchScript file is not loaded without --trust-torchscript (loading runs code inside it):
    then only its path, size, sha256 and labels.json are shown.

    Example:

        curate il info work/il/
    """
    from curate.il import info

    d = info(model, trust_torchscript=trust_torchscript)

    def human(d):
        lines = [f"path: {d['path']}", f"kind: {d['kind']}", f"sha256: {d['sha256']}",
                 f"labels ({len(d['labels'])}): {', '.join(map(str, d['labels']))}", f"input dimension: {d['dimension']}"]
        for k in ("size", "note", "architecture", "chosen_epoch", "val_loss", "val_accuracy", "selection", "optimizer", "embedding_model"):
            if d.get(k) is not None:
                lines.append(f"{k}: {json.dumps(d[k], default=str) if isinstance(d[k], (dict, list)) else d[k]}")
        return "\n".join(lines)

    emit(d, json_out, human)
