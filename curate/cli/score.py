"""`curate score`: add score columns (every method in ``curate.scores.registry``) to an embeddings Parquet."""

from __future__ import annotations

from dataclasses import MISSING, fields
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

import typer

from curate.cli import engine_options as eo
from curate.cli.app import app, emit, handle_errors
from curate.models.config import ARCHITECTURES, HeadSpec, TrainConfig
from curate.runtime import Runtime
from curate.score_config import GRAND_AT, ScoreConfig
from curate.scores.catalog import SUMMARIES, MethodName
from curate.scores.dedup_config import DedupConfig
from curate.scores.gio_config import ESTIMATORS, V_INITS, GioConfig

def _defaults(cls) -> SimpleNamespace:
    """The field defaults of a dataclass, without constructing it: ``ScoreConfig()`` would run
    every method's checks, which import the methods' code (torch, pyarrow)."""
    return SimpleNamespace(**{f.name: f.default if f.default_factory is MISSING else f.default_factory()
                              for f in fields(cls)})


# Defaults come from the library's dataclasses: one source of truth for the CLI and the API. Their
# modules import no torch, polars or pyarrow, so `--help` and option errors answer at once.
_S, _H, _G, _R = _defaults(ScoreConfig), HeadSpec(), GioConfig(), Runtime()
_T = _S.train


def _choices(name: str, values) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)


Arch, GrandAt, Estimator, VInit = (_choices("Arch", ARCHITECTURES), _choices("GrandAt", GRAND_AT),
                                   _choices("Estimator", ESTIMATORS), _choices("VInit", V_INITS))
_METHOD_HELP = "; ".join(SUMMARIES.values())


def _human(s: dict) -> str:
    lines = [f"{s['output']}\t{s['rows']} rows, columns: {', '.join(s['columns'])}"]
    for name in SUMMARIES:
        v = s.get(name)
        if isinstance(v, dict) and "mean" in v:
            lines.append(f"  {name}: mean {v['mean']:.4g}  min {v['min']:.4g}  max {v['max']:.4g}")
    if "gio_selected" in s:
        lines.append(f"  gio: {s['gio_selected']} selected")
    return "\n".join(lines)


@app.command("score")
@handle_errors
def score_cmd(
    pool: str = typer.Argument(..., metavar="POOL", help="Parquet from `curate embed` (id, label, embedding); a path or an s3:// URI."),
    output: str = typer.Option(..., "-o", "--output", metavar="PATH", help="Output Parquet (the pool's columns plus score columns); a path or an s3:// URI."),
    method: List[MethodName] = typer.Option(..., "--method", "-m", help=f"Repeatable. {_METHOD_HELP}."),
    il: Optional[Path] = typer.Option(None, "--il", help="IL model for rho: a `curate il train` directory, a cross-fit directory, or a TorchScript file."),
    trust_torchscript: bool = typer.Option(False, "--trust-torchscript", help="Allow a TorchScript --il file (it runs code from the file)."),
    target: Optional[str] = typer.Option(None, "--target", metavar="PATH", help="GIO: Parquet of target-set embeddings."),
    seeds: int = typer.Option(_S.seeds, "--seeds", "-K", help="Independently initialised heads to average over, 1..1000 (paper: 10)."),
    epochs: int = typer.Option(_T.epochs, "--epochs", "-t", help="Epochs of training on the pool before scoring, 0..100000 (early, as the paper)."),
    arch: Arch = typer.Option(_H.arch, "--arch", help="Snapshot head."),
    hidden: List[int] = typer.Option(list(_H.hidden), "--hidden", help="MLP hidden sizes, each 1..1000000 (repeat for depth)."),
    depth: Optional[int] = typer.Option(None, "--depth", help="MLP hidden layers (1..100), all of the first --hidden size."),
    dropout: float = typer.Option(_H.dropout, "--dropout", help="Dropout in [0, 1)."),
    batch_size: int = typer.Option(_T.batch_size, "--batch-size", help="Training batch size, >= 1."),
    lr: float = typer.Option(_T.lr, "--lr", help="AdamW learning rate, > 0."),
    weight_decay: float = typer.Option(_T.weight_decay, "--weight-decay", help="AdamW weight decay, >= 0 (PyTorch's default)."),
    grand_at: GrandAt = typer.Option(_S.grand_at, "--grand-at", help="GraNd at the epoch-t 'checkpoint' or at 'init' (the paper's t = 0)."),
    std: bool = typer.Option(_S.std, "--std", help="Also write per-seed standard deviation columns (el2n_std, ...)."),
    seed: int = typer.Option(_S.seed, "--seed", help="Seed of heads, data order, folds and GIO, 0..2147483647."),
    lq_folds: int = typer.Option(_S.lq_folds, "--lq-folds", help="label_quality: folds of out-of-sample training, 2..1000."),
    gio_estimator: Estimator = typer.Option(_G.estimator, "--gio-estimator", help="GIO estimate: 'knn' (k-NN KL, covers every target mode) or 'reference' (grad-info-opt's)."),
    gio_k: int = typer.Option(_G.k, "--gio-k", help="GIO: neighbour rank k of the KL estimator, 1..10000."),
    budget: Optional[int] = typer.Option(_G.budget, "--budget", help="GIO: stop after this many selections (>= 1, at most the pool's rows)."),
    max_iter: int = typer.Option(_G.max_iter, "--max-iter", help="GIO, reference estimator: maximum iterations, >= 0 (selects max_iter + 1, as the package)."),
    gio_v_init: VInit = typer.Option(_G.v_init, "--gio-v-init", help="GIO probe start."),
    gio_lr: float = typer.Option(_G.lr, "--gio-lr", help="GIO probe step size, > 0."),
    gio_first_steps: int = typer.Option(_G.first_iter_steps, "--gio-first-steps", help="GIO descent steps in the first round, >= 0."),
    gio_steps: int = typer.Option(_G.later_steps, "--gio-steps", help="GIO descent steps in later rounds, >= 0."),
    gio_init_points: int = typer.Option(_G.init_points, "--gio-init-points", help="GIO: random unit points seeded into the selected set, >= 0."),
    clusters: Optional[int] = typer.Option(_G.clusters, "--clusters", help="GIO quantised mode: k-means pool and target into this many centroids, >= 2."),
    dedup_threshold: float = typer.Option(DedupConfig.threshold, "--dedup-threshold", help="dedup: cosine in (0, 1] at which two rows are near-duplicates."),
    dedup_keep_by: Optional[str] = typer.Option(None, "--dedup-keep-by", metavar="COLUMN[:max|:min]", help="dedup: keep the group's row with the highest COLUMN of the pool (':min' for lowest); default: the row nearest the group's centroid, ties by id."),
    dedup_against: Optional[Path] = typer.Option(None, "--dedup-against", help="dedup: evaluation Parquet from `curate embed`; adds contam_of / contam_sim (pool rows within the threshold of an evaluation row)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch CPU threads, >= 1 (default: torch's)."),
    chunk: int = typer.Option(_R.chunk, "--chunk", help="Rows a scoring pass holds at once, >= 1 (one task of the engine)."),
    engine: str = eo.ENGINE,
    workers: int = eo.workers_option("Row chunks of the per-row pass (el2n, grand, rho's target term)"),
    ray_address: Optional[str] = eo.RAY_ADDRESS,
    cpus_per_worker: Optional[float] = eo.CPUS_PER_WORKER,
    gpus_per_worker: Optional[float] = eo.GPUS_PER_WORKER,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists (OUTPUT may be POOL)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Score every example; columns are keyed by id and re-runs keep other methods' columns.

    Example:

        curate score work/train.parquet --il work/il/ --target work/holdout.parquet --method el2n --method grand --method rho --method gio -o work/scored.parquet

        curate score work/train.parquet --method el2n --engine ray --ray-address auto --workers 8 -o work/scored.parquet
    """
    from curate.checks import int_in

    if depth is not None:
        int_in("--depth", depth, 1, 100)
    hid = tuple(hidden) if depth is None else tuple([hidden[0]] * depth)
    cfg = ScoreConfig(
        methods=tuple(dict.fromkeys(m.value for m in method)), seeds=seeds,
        spec=HeadSpec(arch=arch.value, hidden=hid, dropout=dropout),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay),
        grand_at=grand_at.value, std=std, seed=seed, il=str(il) if il else None, target=str(target) if target else None,
        lq_folds=lq_folds, trust_torchscript=trust_torchscript,
        dedup=DedupConfig(threshold=dedup_threshold, keep_by=dedup_keep_by, against=str(dedup_against) if dedup_against else None),
        gio=GioConfig(estimator=gio_estimator.value, k=gio_k, budget=budget, max_iter=max_iter, v_init=gio_v_init.value,
                      lr=gio_lr, first_iter_steps=gio_first_steps, later_steps=gio_steps, init_points=gio_init_points,
                      clusters=clusters, seed=seed),
    )
    # After the options' checks: resolving the device imports torch, and a bad number need not wait for it.
    runtime = Runtime.build(device, threads=threads, chunk=chunk, engine=engine, workers=workers, ray_address=ray_address,
                            cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    from curate.score import score

    emit(score(pool, output, cfg, overwrite=overwrite, runtime=runtime), json_out, _human)
