"""GraNd: the exact batched computation equals a per-example autograd loop over all parameters."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from curate.models.heads import Ensemble, HeadSpec
from curate.scores.grand import ensemble_grand, grand, module_grand
from score_helpers import clusters


def loop_grand(module: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The obviously-correct definition: one backward per example, norm over every parameter."""
    module.eval()
    norms = []
    for i in range(len(X)):
        module.zero_grad()
        F.cross_entropy(module(X[i:i + 1]), y[i:i + 1], reduction="sum").backward()
        norms.append(torch.sqrt(sum(p.grad.pow(2).sum() for p in module.parameters())))
    return torch.stack(norms)


def _data(n=40, d=12, classes=4):
    X, y = clusters(n, d, classes, seed=3)
    return torch.from_numpy(X).double(), torch.from_numpy(y)


def test_ensemble_grand_equals_per_example_loop_for_linear_and_mlp():
    X, y = _data()
    for spec in (HeadSpec(arch="linear", in_dim=12, n_classes=4),
                 HeadSpec(arch="mlp", in_dim=12, n_classes=4, hidden=(16, 8), dropout=0.3)):
        ens = Ensemble(spec, seeds=[1, 2, 3], dtype=torch.float64)
        fast = ensemble_grand(ens, X, y, chunk=16)  # chunks smaller than N: the last one is short
        for k in range(ens.k):
            slow = loop_grand(ens.member(k), X, y)
            torch.testing.assert_close(fast[k], slow, rtol=0, atol=1e-10)


def test_fast_path_for_a_plain_sequential_head():
    X, y = _data()
    head = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4)).double()
    torch.testing.assert_close(grand(head, X, y)[0], loop_grand(head, X, y), rtol=0, atol=1e-10)


class NormHead(nn.Module):
    """A head outside the fast path: LayerNorm has trainable scale and shift."""

    def __init__(self):
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(12, 10), nn.LayerNorm(10), nn.Linear(10, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


def test_torch_func_fallback_equals_per_example_loop():
    X, y = _data()
    torch.manual_seed(0)
    head = NormHead().double()
    with torch.no_grad():  # move LayerNorm off its identity init so its gradients matter
        head.norm.weight.uniform_(0.5, 1.5)
        head.norm.bias.uniform_(-0.5, 0.5)
    torch.testing.assert_close(grand(head, X, y)[0], loop_grand(head, X, y), rtol=0, atol=1e-10)
    torch.testing.assert_close(module_grand(head, X, y, chunk=7), loop_grand(head, X, y), rtol=0, atol=1e-10)


def test_last_layer_identity_holds():
    # METHODS.md: for the final Linear layer, ||grad|| = ||p - y|| * sqrt(1 + ||h||^2).
    X, y = _data()
    spec = HeadSpec(arch="linear", in_dim=12, n_classes=4)
    ens = Ensemble(spec, seeds=[5], dtype=torch.float64)
    p = torch.softmax(ens(X)[0], -1)
    expected = (p - F.one_hot(y, 4).double()).norm(dim=-1) * torch.sqrt(1 + X.pow(2).sum(-1))
    torch.testing.assert_close(ensemble_grand(ens, X, y)[0], expected.detach(), rtol=0, atol=1e-12)
