"""`curate score`: add EL2N, GraNd, RHO-LOSS and GIO columns to an embeddings Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from curate.cli.app import app, emit, handle_errors


def _human(s: dict) -> str:
    lines = [f"{s['output']}\t{s['rows']} rows, columns: {', '.join(s['columns'])}"]
    for k in ("el2n", "grand", "rho"):
        if k in s:
            lines.append(f"  {k}: mean {s[k]['mean']:.4g}  min {s[k]['min']:.4g}  max {s[k]['max']:.4g}")
    if "gio_selected" in s:
        lines.append(f"  gio: {s['gio_selected']} selected")
    return "\n".join(lines)


@app.command("score")
@handle_errors
def score_cmd(
    pool: Path = typer.Argument(..., help="Parquet from `curate embed` (id, label, embedding)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output Parquet (the pool's columns plus score columns)."),
    method: List[str] = typer.Option(..., "--method", "-m", help="el2n, grand, rho or gio (repeatable)."),
    il: Optional[Path] = typer.Option(None, "--il", help="IL model for rho: a `curate il train` directory, a cross-fit directory, or a TorchScript file."),
    target: Optional[Path] = typer.Option(None, "--target", help="GIO: Parquet of target-set embeddings."),
    seeds: int = typer.Option(10, "--seeds", "-K", help="Independently initialised heads to average over (paper: 10)."),
    epochs: int = typer.Option(3, "--epochs", "-t", min=0, help="Epochs of training on the pool before scoring (early, as the paper)."),
    arch: str = typer.Option("mlp", "--arch", help="Snapshot head: linear or mlp."),
    hidden: List[int] = typer.Option([256], "--hidden", help="MLP hidden sizes (repeat for depth)."),
    depth: Optional[int] = typer.Option(None, "--depth", min=1, help="MLP hidden layers, all of the first --hidden size."),
    dropout: float = typer.Option(0.0, "--dropout"),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help="Training batch size."),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW learning rate."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay (PyTorch's default)."),
    grand_at: str = typer.Option("checkpoint", "--grand-at", help="GraNd at the epoch-t 'checkpoint' or at 'init' (the paper's t = 0)."),
    std: bool = typer.Option(False, "--std", help="Also write per-seed standard deviation columns (el2n_std, ...)."),
    seed: int = typer.Option(0, "--seed", help="Seed of heads, data order and GIO."),
    gio_estimator: str = typer.Option("knn", "--gio-estimator", help="GIO estimate: 'knn' (k-NN KL, covers every target mode) or 'reference' (grad-info-opt's)."),
    gio_k: int = typer.Option(5, "--gio-k", help="GIO: neighbour rank k of the KL estimator."),
    budget: Optional[int] = typer.Option(None, "--budget", help="GIO: stop after this many selections."),
    max_iter: int = typer.Option(100, "--max-iter", help="GIO, reference estimator: maximum iterations (selects max_iter + 1, as the package)."),
    gio_v_init: str = typer.Option("mean", "--gio-v-init", help="GIO probe start: mean, jump or prev_opt."),
    gio_lr: float = typer.Option(0.01, "--gio-lr", help="GIO probe step size."),
    gio_first_steps: int = typer.Option(150, "--gio-first-steps", help="GIO descent steps in the first round."),
    gio_steps: int = typer.Option(50, "--gio-steps", help="GIO descent steps in later rounds."),
    gio_init_points: int = typer.Option(20, "--gio-init-points", help="GIO: random unit points seeded into the selected set."),
    clusters: Optional[int] = typer.Option(None, "--clusters", help="GIO quantised mode: k-means pool and target into this many centroids."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists (OUTPUT may be POOL)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Score every example; columns are keyed by id and re-runs keep other methods' columns.

    Example:

        curate score work/train.parquet --il work/il/ --target work/holdout.parquet --method el2n --method grand --method rho --method gio -o work/scored.parquet
    """
    from curate.models.heads import HeadSpec
    from curate.models.train import TrainConfig
    from curate.score import ScoreConfig, score
    from curate.scores.gio import GioConfig

    hid = tuple(hidden) if depth is None else tuple([hidden[0]] * depth)
    cfg = ScoreConfig(
        methods=tuple(dict.fromkeys(method)), seeds=seeds, epochs=epochs,
        spec=HeadSpec(arch=arch, hidden=hid, dropout=dropout),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay),
        grand_at=grand_at, std=std, seed=seed, il=str(il) if il else None, target=str(target) if target else None,
        gio=GioConfig(estimator=gio_estimator, k=gio_k, budget=budget, max_iter=max_iter, v_init=gio_v_init, lr=gio_lr,
                      first_iter_steps=gio_first_steps, later_steps=gio_steps, init_points=gio_init_points,
                      clusters=clusters, seed=seed),
    )
    emit(score(pool, output, cfg, overwrite=overwrite), json_out, _human)
