"""GraNd (Paul et al., NeurIPS 2021): the per-example gradient norm of the loss over all
trainable parameters, ``|| d CE(f_w(x), y) / dw ||_2``, in eval mode.

For Linear/ReLU heads the norm is exact from one batched forward and backward pass: for a
Linear layer with input ``a_i`` and output gradient ``g_i`` of example i's own loss,
``||dL_i/dW||^2 = ||g_i||^2 ||a_i||^2`` and ``||dL_i/db||^2 = ||g_i||^2``; summing layers
gives the full-parameter norm. Any other module goes through ``torch.func`` per-example
gradients (exact, slower).
"""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import nn
from torch.nn import functional as F

from curate.errors import InputError
from curate.io.columns import LazyColumn
from curate.models.heads import Ensemble
from curate.scores.base import LABELS, SNAPSHOT, Column, ScoreContext, ScoreMethod, snapshot_params

GRAND_AT = ("checkpoint", "init")


def ensemble_grand(ens: Ensemble, X: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Exact per-example, full-parameter gradient norms of every member: (K, N)."""
    ens.eval()
    out = []
    for start in range(0, X.shape[0], chunk):
        xb, yb = X[start:start + chunk], y[start:start + chunk]
        with torch.enable_grad():
            logits, pairs = ens(xb, keep_preactivations=True)
            k, b, c = logits.shape
            # Summed (not averaged) loss: d(sum_i L_i)/dz_i = dL_i/dz_i since rows are independent.
            loss = F.cross_entropy(logits.reshape(k * b, c), yb.repeat(k), reduction="sum")
            grads = torch.autograd.grad(loss, [z for _, z in pairs])
        sq = torch.zeros(k, b, dtype=torch.float64, device=logits.device)
        for layer, ((a, _), g) in enumerate(zip(pairs, grads)):
            # Layer 0's input is the shared batch: its norms once, not K expanded copies.
            a_sq = (xb.pow(2).sum(-1) if layer == 0 and xb.dim() == 2 else a.detach().pow(2).sum(-1)).double()
            sq += g.pow(2).sum(-1).double() * (a_sq + 1.0)
        out.append(sq.sqrt())
    return torch.cat(out, dim=1)


def module_grand(module: nn.Module, X: torch.Tensor, y: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Per-example gradient norms over all trainable parameters of any module (torch.func), (N,)."""
    from torch.func import functional_call, grad, vmap

    module.eval()
    params = {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in module.named_buffers()}

    def loss_one(p, x, t):
        logits = functional_call(module, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, t.unsqueeze(0), reduction="sum")

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))
    norms = []
    for start in range(0, X.shape[0], chunk):
        g = per_example(params, X[start:start + chunk], y[start:start + chunk])
        norms.append(torch.sqrt(sum(v.double().pow(2).flatten(1).sum(1) for v in g.values())))
    return torch.cat(norms)


def is_linear_relu(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and all(isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)) for m in module)


def grand(module: nn.Module | Ensemble, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """GraNd of an ensemble (K, N), or of one module (1, N) by the exact fast path when it has one."""
    if isinstance(module, Ensemble):
        return ensemble_grand(module, X, y)
    if is_linear_relu(module):
        linears = [m for m in module if isinstance(m, nn.Linear)]
        from curate.models.heads import HeadSpec

        spec = HeadSpec(arch="mlp" if len(linears) > 1 else "linear", in_dim=linears[0].in_features,
                        n_classes=linears[-1].out_features, hidden=tuple(m.out_features for m in linears[:-1]))
        ens = Ensemble.from_members(spec, [module], [0]).to(linears[0].weight.dtype)
        return ensemble_grand(ens, X, y)
    return module_grand(module, X, y).unsqueeze(0)


class Grand(ScoreMethod):
    name = "grand"
    summary = "GraNd: per-example gradient norm of the K snapshot heads (higher = more influential)"
    columns = (
        Column("grand", pa.float64(), "mean over K heads of the full-parameter per-example gradient norm, >= 0; higher = more important"),
        Column("grand_std", pa.float64(), "std over the K heads of grand (--std)", std_of="grand"),
    )
    needs = frozenset({LABELS, SNAPSHOT})

    def check(self, cfg) -> None:
        if cfg.grand_at not in GRAND_AT:
            raise InputError(f"--grand-at {cfg.grand_at}: expected 'checkpoint' or 'init'")

    def compute(self, ctx: ScoreContext) -> dict[str, LazyColumn]:
        v = ctx.snapshot["grand"]  # disk columns, read back batch by batch when written
        return {"grand": v.means, **({"grand_std": v.stds} if ctx.cfg.std else {})}

    def provenance(self, ctx: ScoreContext) -> dict:
        cfg = ctx.cfg
        return {"method": "grand", "grand_at": cfg.grand_at, "t_effective": 0 if cfg.grand_at == "init" else cfg.epochs,
                "definition": "mean over K of the full-parameter per-example gradient norm", **snapshot_params(ctx)}
