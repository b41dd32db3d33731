"""Classifier heads: a linear layer or an MLP, as one module or as K stacked independent copies.

``Ensemble`` holds K heads with the same architecture as stacked parameters (``(K, in, out)``)
so K seeds train in one batched pass. AdamW is element-wise and each member's loss depends
only on its own parameters, so training the stack is exactly K independent trainings; a member
can be taken out as an ordinary ``nn.Sequential`` with :meth:`Ensemble.member`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from curate.models.config import ARCHITECTURES, HeadSpec  # noqa: F401  (re-exported)


def build_head(spec: HeadSpec) -> nn.Sequential:
    """An ordinary ``nn.Sequential`` of Linear / ReLU / Dropout layers, for weights loaded into it.

    Its initial weights are drawn from a forked RNG: every caller overwrites them (a loaded model,
    an ``Ensemble`` member), and the caller's global torch RNG must not move.
    """
    layers: list[nn.Module] = []
    sizes = spec.sizes
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        with torch.random.fork_rng(devices=[]):
            layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if spec.dropout:
                layers.append(nn.Dropout(spec.dropout))
    return nn.Sequential(*layers)


def _init_linear(fan_in: int, fan_out: int, gen: torch.Generator, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # nn.Linear's default: kaiming_uniform(a=sqrt(5)) on the weight == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    b = (torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    return w.to(dtype), b.to(dtype)


class Ensemble(nn.Module):
    """K independently initialised heads of one ``HeadSpec``, evaluated together.

    ``forward(x)`` takes ``(B, in)`` (every member sees the same rows) or ``(K, B, in)`` (each
    member its own rows) and returns logits ``(K, B, classes)``. Member k is initialised from
    ``torch.Generator().manual_seed(seeds[k])``.
    """

    def __init__(self, spec: HeadSpec, seeds: list[int], dtype=torch.float32):
        super().__init__()
        self.spec, self.seeds = spec, list(seeds)
        sizes = spec.sizes
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        per_member = []
        for s in self.seeds:
            gen = torch.Generator().manual_seed(int(s))
            per_member.append([_init_linear(a, b, gen, dtype) for a, b in zip(sizes[:-1], sizes[1:])])
        for layer in range(len(sizes) - 1):
            self.weights.append(nn.Parameter(torch.stack([m[layer][0] for m in per_member])))
            self.biases.append(nn.Parameter(torch.stack([m[layer][1] for m in per_member])))

    @classmethod
    def from_state(cls, spec: HeadSpec, seeds: list[int], state: dict[str, torch.Tensor]) -> "Ensemble":
        """K heads whose parameters are ``state``'s tensors themselves (a ``state_dict()`` of an
        ``Ensemble`` of the same spec and seeds): no initial weights drawn, nothing copied.

        For scoring with trained weights, where ``__init__`` + ``load_state_dict`` would draw K
        heads' initial weights only to overwrite them. The tensors are shared, not copied: an
        optimiser step on the result changes ``state``.
        """
        ens = cls.__new__(cls)
        nn.Module.__init__(ens)
        ens.spec, ens.seeds = spec, list(seeds)
        shapes = [(len(ens.seeds), a, b) for a, b in zip(spec.sizes[:-1], spec.sizes[1:])]
        if sorted(state) != sorted([f"weights.{i}" for i in range(len(shapes))] + [f"biases.{i}" for i in range(len(shapes))]):
            raise ValueError(f"state has keys {sorted(state)}, not those of {len(shapes)} stacked layers")
        for i, shape in enumerate(shapes):
            if tuple(state[f"weights.{i}"].shape) != shape or tuple(state[f"biases.{i}"].shape) != shape[::2]:
                raise ValueError(f"layer {i} of state: {tuple(state[f'weights.{i}'].shape)}, expected {shape}")
        ens.weights = nn.ParameterList([nn.Parameter(state[f"weights.{i}"]) for i in range(len(shapes))])
        ens.biases = nn.ParameterList([nn.Parameter(state[f"biases.{i}"]) for i in range(len(shapes))])
        return ens

    @property
    def k(self) -> int:
        return len(self.seeds)

    def forward(self, x: torch.Tensor, keep_preactivations: bool = False):
        """Logits (K, B, C); with ``keep_preactivations`` also each layer's (input, output) pair."""
        h = x if x.dim() == 3 else x.unsqueeze(0).expand(self.k, -1, -1)
        pairs = []
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = torch.baddbmm(b.unsqueeze(1), h, w)
            pairs.append((h, z))
            if i < n - 1:
                h = torch.relu(z)
                if self.spec.dropout and self.training:
                    h = nn.functional.dropout(h, self.spec.dropout, training=True)
            else:
                h = z
        return (h, pairs) if keep_preactivations else h

    def member(self, k: int) -> nn.Sequential:
        """Member ``k`` as an ordinary module (same parameters, copied)."""
        head = build_head(self.spec).to(self.weights[0].dtype)
        linears = [m for m in head if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, self.weights, self.biases):
                lin.weight.copy_(w[k].T)
                lin.bias.copy_(b[k])
        return head

    @classmethod
    def from_members(cls, spec: HeadSpec, heads: list[nn.Sequential], seeds: list[int]) -> "Ensemble":
        ens = cls(spec, seeds)
        with torch.no_grad():
            for k, head in enumerate(heads):
                linears = [m for m in head if isinstance(m, nn.Linear)]
                for layer, lin in enumerate(linears):
                    ens.weights[layer][k].copy_(lin.weight.T)
                    ens.biases[layer][k].copy_(lin.bias)
        return ens
