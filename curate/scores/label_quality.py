"""Label quality (cleanlab's self-confidence, Northcutt et al. 2021): the out-of-sample predicted
probability of the given label.

Rows are split into ``lq_folds`` folds (a permutation drawn from ``seed``); for each fold the K
snapshot heads are trained, as for EL2N, on the other folds only and then score the held-out
rows, so no row is scored by a head that trained on it. The column is the mean over the K heads
of ``softmax(f(x))[y]``: in [0, 1], lower = more likely mislabelled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from curate.errors import InputError
from curate.scores.base import LABELS, Column, ScoreContext, ScoreMethod, finite, snapshot_params


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold index (n,) in [0, folds) of every row: a seeded permutation, dealt round-robin."""
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return fold


def self_confidence(X: np.ndarray, y: np.ndarray, n_classes: int, cfg, runtime) -> np.ndarray:
    """Out-of-fold mean probability of the given label: X (n, d) float32, y (n,) int64 -> (n,) float64."""
    from curate.scores.snapshot import train_heads

    fold = fold_of(len(y), cfg.lq_folds, cfg.seed)
    out = np.empty(len(y))
    for f in range(cfg.lq_folds):
        held, kept = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        ens, _ = train_heads(X[kept], y[kept], n_classes, cfg, runtime)
        with torch.no_grad():
            p = torch.softmax(ens(torch.from_numpy(X[held]).to(runtime.device)).double(), dim=-1)
        out[held] = p[:, torch.arange(len(held)), torch.from_numpy(y[held]).to(p.device)].mean(0).cpu().numpy()
    return out


class LabelQuality(ScoreMethod):
    name = "label_quality"
    summary = "label quality: out-of-fold probability of the given label (lower = likely mislabelled)"
    columns = (Column("label_quality", pa.float64(),
                      "mean over K out-of-fold heads of softmax(f(x))[label], in [0, 1]; lower = more likely mislabelled"),)
    needs = frozenset({LABELS})

    def check(self, cfg) -> None:
        if cfg.lq_folds < 2:
            raise InputError(f"--lq-folds {cfg.lq_folds}: expected at least 2")

    def compute(self, ctx: ScoreContext) -> dict[str, pa.Array]:
        if ctx.n < ctx.cfg.lq_folds:
            raise InputError(f"{ctx.pool}: {ctx.n} rows cannot fill --lq-folds {ctx.cfg.lq_folds}; lower --lq-folds")
        v = self_confidence(ctx.X, ctx.y, len(ctx.classes), ctx.cfg, ctx.runtime)
        return {"label_quality": pa.array(finite("label_quality", v, ctx.ids))}

    def provenance(self, ctx: ScoreContext) -> dict[str, Any]:
        return {"method": "label_quality", "folds": ctx.cfg.lq_folds,
                "definition": "out-of-fold mean over K of softmax(f(x))[y] (cleanlab self-confidence)",
                "folds_from": "numpy default_rng(seed).permutation(n), dealt round-robin", **snapshot_params(ctx)}
