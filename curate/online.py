"""Online batch selection as RHO-LOSS runs it (Mindermann et al., ICML 2022): a drop-in selector.

At every training step the caller draws a big batch of ``B`` points uniformly; the selector
scores each point with the *current* model and returns the indices of the ``k = round(ratio *
B)`` points to train on (at least one). Methods:

- ``rho``: reducible holdout loss ``CE(model; x, y) - il_loss(x, y)``, highest first. High:
  learnable, worth learning, not yet learnt; noisy labels have a high IL (low rho), learnt
  points a low training loss (low rho). ``il_loss`` is computed once, before training, by an
  IL model trained only on holdout data (Algorithm 1's approximation).
- ``loss``: training loss ``CE(model; x, y)``, highest first (the paper's baseline; it
  prefers noisy labels).
- ``uniform``: ``k`` of the ``B`` points uniformly at random from a seeded generator (the
  baseline that trains on the same number of points per step).

Selection runs the model in eval mode (dropout off, BatchNorm running statistics; each
module's mode is restored afterwards) under ``torch.no_grad()``: it never builds an autograd
graph and never touches ``.grad``. Ties are broken by position in the big batch (stable sort).

A user's own loop (``model`` maps inputs to logits; ``il`` holds the IL loss of each row)::

    import torch
    from curate.online import OnlineSelector

    selector = OnlineSelector.from_losses(il, method="rho", ratio=0.1)
    opt = torch.optim.AdamW(model.parameters())
    for step in range(steps):
        big = torch.randint(len(X), (320,))               # indices of a uniform big batch
        pick = selector.select(model, X[big], y[big], ids=big)
        model.train()
        loss = torch.nn.functional.cross_entropy(model(X[big][pick]), y[big][pick])
        opt.zero_grad(); loss.backward(); opt.step()

``OnlineSelector.from_il_model(ILModel(...))`` computes IL losses from the inputs instead (for
embeddings the IL model was trained on); ``OnlineSelector.from_scored(path)`` reads the
``il_loss`` column of a file written by ``curate score --method rho`` and looks ids up in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from curate.errors import InputError
from curate.scores.rho import per_example_ce

METHODS = ("rho", "loss", "uniform")


def selected_count(ratio: float, big: int) -> int:
    """``round(ratio * big)``, at least 1 and at most ``big``."""
    return max(1, min(big, int(round(ratio * big))))


class OnlineSelector:
    """Pick the points of a big batch to train on: by reducible loss, by loss, or uniformly.

    ``il``: where the irreducible loss comes from (needed for ``rho`` only):
    a float array/tensor indexed by integer ids, a mapping ``id -> il_loss``, or an
    :class:`curate.il.ILModel` (losses computed from ``x`` and ``y``; ``y`` in its label order).
    ``ratio``: the share of the big batch to select, in (0, 1]. ``seed``: the uniform method's
    generator (a ``torch.Generator`` on CPU).
    """

    def __init__(self, method: str = "rho", ratio: float = 0.1, il: Any = None, seed: int = 0):
        if method not in METHODS:
            raise InputError(f"--select {method}: expected one of {', '.join(METHODS)}")
        if not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
            raise InputError(f"--ratio {ratio}: must be in (0, 1]")
        if method == "rho" and il is None:
            raise InputError("--select rho needs the irreducible losses: an IL model (--il IL_DIR) or an il_loss column")
        self.method, self.ratio, self.il = method, float(ratio), il
        if isinstance(il, np.ndarray):
            self.il = torch.from_numpy(np.asarray(il, dtype=np.float64))
        self.generator = torch.Generator().manual_seed(int(seed))
        self.last_scores: torch.Tensor | None = None

    @classmethod
    def from_losses(cls, il_loss, method: str = "rho", ratio: float = 0.1, seed: int = 0) -> "OnlineSelector":
        """IL losses precomputed per id: an array (integer ids) or a mapping (any hashable ids)."""
        return cls(method, ratio, il_loss, seed)

    @classmethod
    def from_il_model(cls, model, method: str = "rho", ratio: float = 0.1, seed: int = 0) -> "OnlineSelector":
        """An :class:`curate.il.ILModel`; IL losses come from ``x`` (embeddings) and ``y`` at each step."""
        return cls(method, ratio, model, seed)

    @classmethod
    def from_scored(cls, path: str | Path, method: str = "rho", ratio: float = 0.1, seed: int = 0) -> "OnlineSelector":
        """The ``id`` and ``il_loss`` columns of a file from ``curate score --method rho``; ids are strings."""
        from curate.io.parquet import read_table

        t = read_table(path, columns=["id", "il_loss"])
        if t.column("il_loss").null_count:
            raise InputError(f"{path}: il_loss has {t.column('il_loss').null_count} null values; re-run `curate score --method rho`")
        return cls(method, ratio, dict(zip(t.column("id").to_pylist(), t.column("il_loss").to_pylist())), seed)

    def il_loss(self, x: torch.Tensor, y: torch.Tensor, ids=None) -> torch.Tensor:
        """IL loss (float64, (B,)) of the big batch, on ``y``'s device."""
        il = self.il
        if isinstance(il, torch.Tensor):
            if ids is None:
                raise InputError("select(..., ids=...) is needed: the IL losses are indexed by id")
            index = torch.as_tensor(ids, dtype=torch.long, device=il.device)
            return il[index].to(device=y.device, dtype=torch.float64)
        if isinstance(il, Mapping):
            if ids is None:
                raise InputError("select(..., ids=...) is needed: the IL losses are looked up by id")
            keys = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
            missing = next((k for k in keys if k not in il), None)
            if missing is not None:
                raise InputError(f"id {missing!r} has no il_loss; score the whole pool with `curate score --method rho`")
            return torch.tensor([float(il[k]) for k in keys], dtype=torch.float64, device=y.device)
        ids_list = None if ids is None else [str(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        return il.index_losses(x, y, ids_list).to(y.device)

    @torch.no_grad()
    def scores(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids=None) -> torch.Tensor | None:
        """Selection scores (float64, (B,), higher = selected first), or None for ``uniform``.

        ``loss``: CE of ``model`` in eval mode; ``rho``: that minus the IL loss.
        """
        if self.method == "uniform":
            return None
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            loss = per_example_ce(model(x), y)
        finally:
            for m, training in modes:
                m.training = training
        if self.method == "loss":
            return loss
        return loss - self.il_loss(x, y, ids)

    def select(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids=None) -> torch.Tensor:
        """Indices (int64, (k,), into the big batch ``x`` (B, ...), ``y`` (B,)) of the points to train on,
        highest score first (``uniform``: in random order). ``ids`` identify the rows for the IL lookup.
        The big batch's scores stay in ``last_scores`` (None for ``uniform``)."""
        big = int(y.shape[0])
        if big < 1:
            raise InputError("select: the big batch is empty")
        k = selected_count(self.ratio, big)
        s = self.last_scores = self.scores(model, x, y, ids)
        if s is None:
            return torch.randperm(big, generator=self.generator)[:k].to(y.device)
        return torch.argsort(s, descending=True, stable=True)[:k]

