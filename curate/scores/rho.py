"""RHO-LOSS (Mindermann et al., ICML 2022), offline: ``rho = target_loss - il_loss``.

``target_loss`` is the per-example CE of snapshot heads trained on the pool (mean over seeds);
``il_loss`` the CE of the irreducible-loss model trained only on holdout data.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from curate.errors import InputError
from curate.io.columns import DiskColumn, LazyColumn, MapColumn
from curate.scores.base import IL_MODEL, LABELS, SNAPSHOT, Column, ScoreContext, ScoreMethod, finite_column, snapshot_params


def per_example_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE per example: logits (..., N, C), labels (N,) -> (..., N), float64."""
    lp = torch.log_softmax(logits.double(), dim=-1)
    return -lp.gather(-1, y.view(*([1] * (lp.dim() - 2)), -1, 1).expand(*lp.shape[:-1], 1)).squeeze(-1)


class Rho(ScoreMethod):
    name = "rho"
    summary = "RHO-LOSS: snapshot heads' loss minus the IL model's (needs --il; higher = learnable, not yet learnt)"
    columns = (
        Column("rho", pa.float64(), "target_loss - il_loss, unbounded; higher = worth training on, very low = noisy or redundant"),
        Column("target_loss", pa.float64(), "mean over K snapshot heads of per-example CE, >= 0; higher = not yet learnt"),
        Column("il_loss", pa.float64(), "CE of the irreducible-loss model trained on holdout data, >= 0; higher = unlearnable or mislabelled"),
        Column("target_loss_std", pa.float64(), "std over the K heads of target_loss (--std)", std_of="target_loss"),
    )
    needs = frozenset({LABELS, SNAPSHOT, IL_MODEL})

    def check(self, cfg) -> None:
        if not cfg.il:
            raise InputError("--method rho needs --il IL_DIR (train one with `curate il train HOLDOUT.parquet -o IL_DIR`)")

    def compute(self, ctx: ScoreContext) -> dict[str, LazyColumn]:
        # Streamed over the pool into a disk column: neither the embeddings nor an n-length array held.
        losses = ctx.il_model.pool_losses(ctx.embeddings, ctx.codes, ctx.classes, ctx.id_view, str(ctx.pool),
                                          out=DiskColumn(np.float64))
        il_loss = finite_column("il_loss", losses, ctx.id_view)
        ce = ctx.snapshot["ce"]
        target_loss = ce.means
        out = {"target_loss": target_loss, "il_loss": il_loss, "rho": MapColumn(np.subtract, target_loss, il_loss)}
        if ctx.cfg.std:
            out["target_loss_std"] = ce.stds
        return out

    def provenance(self, ctx: ScoreContext) -> dict:
        desc = ctx.il_model.describe()
        return {"method": "rho", "definition": "target_loss - il_loss", "il_model_sha256": desc["sha256"], "il_model": desc,
                **snapshot_params(ctx)}
