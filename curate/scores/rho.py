"""RHO-LOSS (Mindermann et al., ICML 2022), offline: ``rho = target_loss - il_loss``.

``target_loss`` is the per-example CE of snapshot heads trained on the pool (mean over seeds);
``il_loss`` the CE of the irreducible-loss model trained only on holdout data.
"""

from __future__ import annotations

import torch


def per_example_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE per example: logits (..., N, C), labels (N,) -> (..., N), float64."""
    lp = torch.log_softmax(logits.double(), dim=-1)
    return -lp.gather(-1, y.view(*([1] * (lp.dim() - 2)), -1, 1).expand(*lp.shape[:-1], 1)).squeeze(-1)


def rho(target_loss: torch.Tensor, il_loss: torch.Tensor) -> torch.Tensor:
    return target_loss - il_loss
