"""EL2N (Paul et al., NeurIPS 2021): ``|| softmax(f(x)) - onehot(y) ||_2`` (unsquared), per model."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def el2n(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-model EL2N: logits (K, N, C), labels (N,) -> (K, N). Average over K afterwards."""
    p = torch.softmax(logits.double(), dim=-1)
    return (p - F.one_hot(y, p.shape[-1]).double()).norm(dim=-1)
