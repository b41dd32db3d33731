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
from curate.score_config import GRAND_AT
from curate.scores.base import LABELS, SNAPSHOT, Column, ScoreContext, ScoreMethod, snapshot_params


def ensemble_grand(ens: Ensemble, X: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Exact per-example, full-parameter gradient norms of every member: (K, N) float64."""
    return torch.cat([grand_and_logits(ens, X[s:s + chunk], y[s:s + chunk])[0] for s in range(0, X.shape[0], chunk)], dim=1)


def grand_and_logits(ens: Ensemble, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GraNd of every member on one batch, (K, b) float64, and the eval-mode logits (K, b, C).

    ``xb``: (b, in) rows every member sees, or (K, b, in); ``yb``: (b,) class indices. The
    logits are those of the forward GraNd differentiates, so a caller that also needs them
    (EL2N, CE) needs no second forward.

    The backward to each layer's pre-activations is written out rather than recorded by
    autograd: the very kernels autograd runs for ``sum(CE)`` through ``baddbmm`` and ReLU
    (``_log_softmax_backward_data``, ``grad.bmm(w^T)``, ReLU's mask), so the same bits, but
    with ReLU, the mask and the squares applied in place: on a chunk of 8,192 rows each
    (K, b, hidden) tensor is tens of MB, and a fresh one cost more than the arithmetic on it.
    """
    ens.eval()
    ws = [w.detach() for w in ens.weights]
    n, k = len(ws), ens.k
    with torch.no_grad():
        # The forward of Ensemble.forward in eval mode (dropout off), op for op.
        h = xb if xb.dim() == 3 else xb.unsqueeze(0).expand(k, -1, -1)
        inputs = []
        for i, (w, b) in enumerate(zip(ws, ens.biases)):
            inputs.append(h)
            z = torch.baddbmm(b.detach().unsqueeze(1), h, w)
            h = z.relu_() if i < n - 1 else z
        logits = h
        _, rows, c = logits.shape
        # d sum_i CE_i / d logits: nll_loss's gradient (-1 at the label) through log_softmax's backward.
        lsm = torch.log_softmax(logits.reshape(k * rows, c), 1)
        g_lsm = torch.zeros_like(lsm).scatter_(1, yb.repeat(k).unsqueeze(1), -1.0)
        g = torch._log_softmax_backward_data(g_lsm, lsm, 1, lsm.dtype).view(k, rows, c)
        terms = [None] * n
        for layer in reversed(range(n)):
            a = inputs[layer]
            # The gradient one layer down, before a (that layer's ReLU output) is squared in place.
            below = g.bmm(ws[layer].transpose(1, 2)).masked_fill_(a <= 0, 0) if layer > 0 else None
            # Layer 0's input is the caller's batch: its norms once, not K expanded copies, and never in place.
            if layer == 0:
                a_sq = (xb.pow(2).sum(-1) if xb.dim() == 2 else a.pow(2).sum(-1)).double()
            else:
                a_sq = a.pow_(2).sum(-1).double()
            terms[layer] = g.pow_(2).sum(-1).double() * (a_sq + 1.0)  # ||dL/dW||^2 + ||dL/db||^2
            g = below
        sq = torch.zeros(k, rows, dtype=torch.float64, device=logits.device)
        for t in terms:  # summed from layer 0 up, the order the norms have always been added in
            sq += t
    return sq.sqrt(), logits


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
