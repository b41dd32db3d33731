"""The score step: add score columns to a Parquet file of embeddings, keyed by ``id``.

EL2N, GraNd and the target term of RHO share one set of K snapshot heads trained on the pool
for ``epochs`` epochs (``epochs=0`` scores at initialisation). Re-running with another method
adds its columns and keeps the others; re-running a method replaces its columns. Each column's
parameters go to the footer under ``scores``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curate import progress
from curate.errors import InputError
from curate.io.atomic import atomic_path, check_output
from curate.io.labels import class_order, require_labels
from curate.io.parquet import WRITE_OPTIONS, open_parquet, read_embeddings, read_provenance, read_table, with_provenance
from curate.io.provenance import base_record, fingerprint
from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import TrainConfig, train_ensemble
from curate.scores.el2n import el2n
from curate.scores.gio import GioConfig
from curate.scores.grand import ensemble_grand
from curate.scores.rho import per_example_ce

METHODS = ("el2n", "grand", "rho", "gio")
COLUMNS = {
    "el2n": ["el2n", "el2n_std"],
    "grand": ["grand", "grand_std"],
    "rho": ["rho", "target_loss", "il_loss", "target_loss_std"],
    "gio": ["gio_selected", "gio_order", "gio_score"],
}
DEFAULT_EPOCHS = 3


@dataclass(frozen=True)
class ScoreConfig:
    """Options of a score run (see ``curate score --help``)."""

    methods: tuple[str, ...] = ("el2n",)
    seeds: int = 10
    epochs: int = DEFAULT_EPOCHS
    spec: HeadSpec = field(default_factory=lambda: HeadSpec(arch="mlp"))
    train: TrainConfig = field(default_factory=TrainConfig)
    grand_at: str = "checkpoint"  # "checkpoint" (epoch t) or "init" (the paper's t = 0)
    std: bool = False
    seed: int = 0
    il: str | None = None
    target: str | None = None
    gio: GioConfig = field(default_factory=GioConfig)
    chunk: int = 8192


def _validate(cfg: ScoreConfig) -> None:
    if not cfg.methods:
        raise InputError("pass at least one --method (el2n, grand, rho, gio)")
    for m in cfg.methods:
        if m not in METHODS:
            raise InputError(f"--method {m}: unknown; choose from {', '.join(METHODS)}")
    if cfg.grand_at not in ("checkpoint", "init"):
        raise InputError(f"--grand-at {cfg.grand_at}: expected 'checkpoint' or 'init'")
    if cfg.seeds < 1:
        raise InputError("--seeds must be at least 1")
    if cfg.epochs < 0:
        raise InputError("--epochs must be >= 0")
    if "rho" in cfg.methods and not cfg.il:
        raise InputError("--method rho needs --il IL_DIR (train one with `curate il train HOLDOUT.parquet -o IL_DIR`)")
    if "gio" in cfg.methods and not cfg.target:
        raise InputError("--method gio needs --target TARGET.parquet (embeddings of the distribution you want)")


def _snapshot_scores(X: np.ndarray, y: np.ndarray, n_classes: int, cfg: ScoreConfig) -> dict[str, np.ndarray]:
    """Train K heads for ``epochs`` epochs and score every row with each (eval mode)."""
    seeds = [cfg.seed * 1000 + k for k in range(cfg.seeds)]
    spec = HeadSpec(arch=cfg.spec.arch, in_dim=X.shape[1], n_classes=n_classes, hidden=cfg.spec.hidden, dropout=cfg.spec.dropout)
    torch.manual_seed(cfg.seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    ens = Ensemble(spec, seeds)
    want_grand = "grand" in cfg.methods
    init = Ensemble(spec, seeds) if (want_grand and cfg.grand_at == "init") else None
    train = TrainConfig(epochs=cfg.epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    with progress.bar(f"train {cfg.seeds} heads", total=cfg.epochs, unit="epochs") as bar:
        train_ensemble(ens, Xt, yt, train, on_epoch=lambda _: bar.advance())
    n = len(y)
    out = {k: np.empty((cfg.seeds, n)) for k in ("el2n", "ce", "grand")}
    with progress.bar("score", total=n) as bar:
        for s in range(0, n, cfg.chunk):
            xb, yb = Xt[s:s + cfg.chunk], yt[s:s + cfg.chunk]
            with torch.no_grad():
                logits = ens(xb)
            out["el2n"][:, s:s + len(yb)] = el2n(logits, yb).numpy()
            out["ce"][:, s:s + len(yb)] = per_example_ce(logits, yb).numpy()
            if want_grand:
                out["grand"][:, s:s + len(yb)] = ensemble_grand(init or ens, xb, yb, chunk=cfg.chunk).numpy()
            bar.advance(len(yb))
    return out


def _write_streaming(pool: Path, output: Path, keep: list[str], new: dict[str, pa.Array], record: dict) -> None:
    """Copy POOL's kept columns batch by batch and append the new columns: memory stays at one batch."""
    pf = open_parquet(pool)
    schema = pa.schema([pf.schema_arrow.field(c) for c in keep] + [pa.field(n, a.type) for n, a in new.items()])
    schema = with_provenance(schema.empty_table(), record).schema
    start = 0
    with atomic_path(output) as tmp:
        with pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as writer:
            for batch in pf.iter_batches(batch_size=65536, columns=keep):
                n = batch.num_rows
                arrays = batch.columns + [a.slice(start, n) for a in new.values()]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                start += n


def score(pool: str | Path, output: str | Path, cfg: ScoreConfig = ScoreConfig(), overwrite: bool = False) -> dict[str, Any]:
    """Score POOL with ``cfg.methods`` and write POOL's columns plus the score columns to OUTPUT."""
    _validate(cfg)
    pool, output = Path(pool), Path(output)
    in_place = pool.resolve() == output.resolve() if output.exists() else False
    # In place (-o POOL --overwrite) is allowed: POOL is then a curate file, replaced atomically.
    check_output(output, overwrite, inputs=(cfg.il, cfg.target) if in_place else (pool, cfg.il, cfg.target))
    names = open_parquet(pool).schema_arrow.names
    for col in ("id", "embedding"):
        if col not in names:
            raise InputError(f"{pool}: no {col!r} column; produce the file with `curate embed`")
    # Only what scoring needs is held in memory; the other columns stream through at write time.
    table = read_table(pool, columns=[c for c in ("id", "label") if c in names])
    if len(table) == 0:
        raise InputError(f"{pool}: the dataset is empty")
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        seen, dup = set(), None
        for i in ids:
            if i in seen:
                dup = i
                break
            seen.add(i)
        raise InputError(f"{pool}: duplicate id {dup!r}; ids must be unique")
    X = read_embeddings(pool)
    prov = read_provenance(pool)
    threads = torch.get_num_threads()
    common = {"seed": cfg.seed, "torch_threads": threads, "pool": fingerprint(pool) if not in_place else None}
    new: dict[str, pa.Array] = {}
    records: dict[str, dict] = {}
    labelled = [m for m in cfg.methods if m in ("el2n", "grand", "rho")]
    summary: dict[str, Any] = {"output": str(output), "rows": len(ids), "methods": list(cfg.methods)}

    if labelled:
        labels = require_labels(table, pool, "el2n, grand and rho")
        il_model = None
        if "rho" in cfg.methods:
            from curate.il import ILModel

            il_model = ILModel(cfg.il)
            il_loss = il_model.losses(ids, labels, X, str(pool))
        classes = class_order(labels)
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in labels], dtype=np.int64)
        snap = _snapshot_scores(X, y, len(classes), cfg)
        params = {"K": cfg.seeds, "t": cfg.epochs, "architecture": cfg.spec.to_dict() | {"in_dim": X.shape[1], "n_classes": len(classes)},
                  "optimizer": cfg.train.to_dict() | {"epochs": cfg.epochs}, "seeds": [cfg.seed * 1000 + k for k in range(cfg.seeds)],
                  "mode": "eval", "reduction": "per-example", **common}
        if "el2n" in cfg.methods:
            new["el2n"] = pa.array(snap["el2n"].mean(0))
            records["el2n"] = {"method": "el2n", "definition": "mean over K of ||softmax(f(x)) - onehot(y)||_2", **params}
            if cfg.std:
                new["el2n_std"] = pa.array(snap["el2n"].std(0))
        if "grand" in cfg.methods:
            new["grand"] = pa.array(snap["grand"].mean(0))
            records["grand"] = {"method": "grand", "grand_at": cfg.grand_at,
                                "t_effective": 0 if cfg.grand_at == "init" else cfg.epochs,
                                "definition": "mean over K of the full-parameter per-example gradient norm", **params}
            if cfg.std:
                new["grand_std"] = pa.array(snap["grand"].std(0))
        if "rho" in cfg.methods:
            target_loss = snap["ce"].mean(0)
            new["target_loss"] = pa.array(target_loss)
            new["il_loss"] = pa.array(il_loss)
            new["rho"] = pa.array(target_loss - il_loss)
            il_desc = il_model.describe()
            rec = {"method": "rho", "definition": "target_loss - il_loss", "il_model_sha256": il_desc["sha256"], "il_model": il_desc, **params}
            for c in ("rho", "target_loss", "il_loss"):
                records[c] = rec
            if cfg.std:
                new["target_loss_std"] = pa.array(snap["ce"].std(0))

    if "gio" in cfg.methods:
        from curate.scores.gio import score_gio

        T = read_embeddings(cfg.target)
        if len(T) == 0:
            raise InputError(f"{cfg.target}: the target set is empty")
        if T.shape[1] != X.shape[1]:
            raise InputError(f"{cfg.target}: target embeddings have {T.shape[1]} dimensions, the pool {X.shape[1]}; "
                             "embed both with the same model")
        tprov = read_provenance(cfg.target)
        a, b = (prov.get("embedding_model") or {}).get("sha256"), (tprov.get("embedding_model") or {}).get("sha256")
        if a and b and a != b:
            raise InputError(f"{cfg.target}: embedded with a different model than {pool} "
                             f"({tprov['embedding_model'].get('name')} vs {prov['embedding_model'].get('name')}); re-embed one of them")
        cols, gprov = score_gio(X, T, cfg.gio)
        order = np.asarray(cols["gio_order"], dtype=np.int32)
        new["gio_selected"] = pa.array(np.asarray(cols["gio_selected"], dtype=bool))
        new["gio_order"] = pa.array(order, pa.int32(), mask=order < 0)
        new["gio_score"] = pa.array(np.asarray(cols["gio_score"], dtype=np.float64))
        rec = {"method": "gio", "target": fingerprint(cfg.target), **gprov, **common}
        for c in COLUMNS["gio"]:
            records[c] = rec
        summary["gio_selected"] = int(np.asarray(cols["gio_selected"]).sum())

    # Columns of the methods re-run are replaced; everything else is kept as it was.
    replaced = {c for m in cfg.methods for c in COLUMNS[m]}
    scores = {k: v for k, v in (prov.get("scores") or {}).items() if k not in replaced}
    scores.update(records)
    record = dict(prov) if prov else {}
    record["scores"] = scores
    record.setdefault("history", [])
    record["history"] = record["history"] + [{k: v for k, v in base_record("score").items() if k != "tool"}]
    _write_streaming(pool, output, [c for c in names if c not in replaced], new, record)
    for name in ("el2n", "grand", "rho"):
        if name in new:
            v = np.asarray(new[name])
            summary[name] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
    summary["columns"] = list(new)
    return summary
