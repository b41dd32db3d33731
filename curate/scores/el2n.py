"""EL2N (Paul et al., NeurIPS 2021): ``|| softmax(f(x)) - onehot(y) ||_2`` (unsquared), per model."""

from __future__ import annotations

import pyarrow as pa
import torch
from torch.nn import functional as F

from curate.io.columns import LazyColumn
from curate.scores.base import LABELS, SNAPSHOT, Column, ScoreContext, ScoreMethod, snapshot_params


def el2n(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-model EL2N: logits (K, N, C), labels (N,) -> (K, N). Average over K afterwards."""
    p = torch.softmax(logits.double(), dim=-1)
    return (p - F.one_hot(y, p.shape[-1]).double()).norm(dim=-1)


class El2n(ScoreMethod):
    name = "el2n"
    summary = "EL2N: error-vector norm of the K snapshot heads (higher = harder)"
    columns = (
        Column("el2n", pa.float64(), "mean over K heads of ||softmax(f(x)) - onehot(y)||_2, in [0, sqrt(2)]; higher = harder or mislabelled"),
        Column("el2n_std", pa.float64(), "std over the K heads of el2n (--std); higher = less agreement", std_of="el2n"),
    )
    needs = frozenset({LABELS, SNAPSHOT})

    def compute(self, ctx: ScoreContext) -> dict[str, LazyColumn]:
        v = ctx.snapshot["el2n"]  # disk columns, read back batch by batch when written
        return {"el2n": v.means, **({"el2n_std": v.stds} if ctx.cfg.std else {})}

    def provenance(self, ctx: ScoreContext) -> dict:
        return {"method": "el2n", "definition": "mean over K of ||softmax(f(x)) - onehot(y)||_2", **snapshot_params(ctx)}
