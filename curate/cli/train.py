"""`curate train`: train a head with online batch selection (RHO-LOSS, loss, uniform)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from curate.cli.app import app, emit, handle_errors


@app.command("train")
@handle_errors
def train_cmd(
    pool: Path = typer.Argument(..., metavar="POOL.parquet", help="Parquet from `curate embed` with labels: the data to train on."),
    output: Path = typer.Option(..., "-o", "--output", help="Run directory to write (model, selected.parquet, curve.parquet)."),
    il: Optional[Path] = typer.Option(None, "--il", help="IL model (`curate il train` directory); needed for --select rho."),
    select: str = typer.Option("rho", "--select", help="rho (reducible loss), loss (training loss) or uniform."),
    ratio: float = typer.Option(0.1, "--ratio", help="Share of each big batch trained on, in (0, 1]."),
    big_batch: int = typer.Option(320, "--big-batch", help="Rows drawn per step before selection, 1 to the pool size."),
    steps: int = typer.Option(1000, "--steps", help="Training steps, 1 to 10,000,000."),
    eval_file: Optional[Path] = typer.Option(None, "--eval", help="Labelled Parquet (same embedding model) to evaluate on."),
    eval_every: int = typer.Option(100, "--eval-every", help="Evaluate every N steps (>= 1), and at the last step."),
    arch: str = typer.Option("mlp", "--arch", help="Head architecture: linear or mlp."),
    hidden: List[int] = typer.Option([256], "--hidden", metavar="N", help="MLP hidden sizes, 1 to 65,536 (repeat for depth)."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout after each hidden layer (training only), in [0, 1)."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate, > 0."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay, >= 0."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation, batch order and uniform selection, 0 to 4,294,967,295."),
    threads: int = typer.Option(1, "--threads", help="Torch threads, 1 to 1024. Default 1: a small head gains little from more, "
                                "and slows down several-fold when other jobs share the cores (benchmarks/bench_threads.py)."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when one is visible), cpu, cuda, cuda:N or mps."),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="Allow a TorchScript --il file. "
                                           "Loading it executes code stored inside the file: only for files you trust."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Train a head on POOL, each step on the points of a big batch picked by reducible loss.

    The paper's method (RHO-LOSS, online): per step, draw --big-batch rows, score them with the
    current model (training loss minus the IL model's loss) and train on the top --ratio.
    --select loss and uniform are its baselines, on the same number of points per step.

    Example:

        curate train work/train.parquet --il work/il/ --select rho --ratio 0.1 --big-batch 320 --steps 2000 --eval work/test.parquet -o work/run-rho/
    """
    from curate.cli import train_options as opt
    from curate.errors import InputError
    from curate.models.heads import HeadSpec
    from curate.online import METHODS
    from curate.online_train import OnlineConfig, train_online
    from curate.runtime import Runtime

    if select not in METHODS:
        raise InputError(f"--select {select}: expected one of {', '.join(METHODS)}")
    if not (0 < ratio <= 1):
        raise InputError(f"--ratio {ratio}: must be in (0, 1]")
    opt.int_range("--big-batch", big_batch, 1, opt.MAX_BATCH)
    opt.int_range("--steps", steps, 1, 10_000_000)
    opt.int_range("--eval-every", eval_every, 1, 10_000_000)
    hid = opt.head_options(hidden, None, dropout, lr, weight_decay, seed)
    runtime = Runtime.build(device, threads=opt.threads_option(threads))
    cfg = OnlineConfig(method=select, ratio=ratio, big_batch=big_batch, steps=steps, eval_every=eval_every,
                       spec=HeadSpec(arch=arch, hidden=hid, dropout=dropout), lr=lr, weight_decay=weight_decay, seed=seed)
    summary = train_online(pool, output, cfg, il=il, eval_path=eval_file, trust_torchscript=trust_torchscript,
                           overwrite=overwrite, runtime=runtime)
    summary.pop("curve")

    def human(s):
        acc = "" if s["final_eval_accuracy"] is None else f", eval accuracy {s['final_eval_accuracy']:.4f}"
        return f"{s['output']}\t{s['method']}: {s['steps']} steps of {s['selected_per_step']} of {s['big_batch']} rows{acc}"

    emit(summary, json_out, human)
