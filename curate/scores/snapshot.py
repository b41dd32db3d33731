"""The K snapshot heads shared by EL2N, GraNd and RHO's target term: train once, score every row.

The per-row pass is :func:`score_rows` over a plain, picklable :class:`RowTask` (head states as
CPU tensors, a chunk of embeddings and labels), so an engine can ship chunks to other processes
or machines and get the same bytes back as the in-process loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from curate import progress
from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import TrainConfig, train_ensemble
from curate.scores.el2n import el2n
from curate.scores.grand import ensemble_grand
from curate.scores.rho import per_example_ce


@dataclass(frozen=True)
class RowTask:
    """One chunk of the per-row pass: everything it needs, nothing else (picklable)."""

    spec: dict[str, Any]  # HeadSpec.to_dict()
    seeds: tuple[int, ...]
    state: dict[str, torch.Tensor]  # trained heads (CPU)
    grand_state: dict[str, torch.Tensor] | None  # heads GraNd is taken at (None: no GraNd)
    X: np.ndarray  # (b, d) float32
    y: np.ndarray  # (b,) int64
    device: str = "cpu"


def _ensemble(spec: dict, seeds, state, device) -> Ensemble:
    ens = Ensemble(HeadSpec.from_dict(spec), list(seeds))
    ens.load_state_dict(state)
    return ens.to(device).eval()


def score_rows(task: RowTask) -> dict[str, np.ndarray]:
    """EL2N, CE and (when asked) GraNd of every member on the chunk: each (K, b) float64."""
    ens = _ensemble(task.spec, task.seeds, task.state, task.device)
    xb = torch.from_numpy(task.X).to(task.device)
    yb = torch.from_numpy(task.y).to(task.device)
    with torch.no_grad():
        logits = ens(xb)
    out = {"el2n": el2n(logits, yb).cpu().numpy(), "ce": per_example_ce(logits, yb).cpu().numpy()}
    if task.grand_state is not None:
        at = ens if task.grand_state is task.state else _ensemble(task.spec, task.seeds, task.grand_state, task.device)
        out["grand"] = ensemble_grand(at, xb, yb, chunk=len(task.y) or 1).cpu().numpy()
    return out


def seeds_of(cfg) -> list[int]:
    return [cfg.seed * 1000 + k for k in range(cfg.seeds)]


def train_heads(X: np.ndarray, y: np.ndarray, n_classes: int, cfg, runtime) -> tuple[Ensemble, Ensemble | None]:
    """The K trained heads on ``runtime.device`` and, for GraNd at init, the untrained ones."""
    spec = HeadSpec(arch=cfg.spec.arch, in_dim=X.shape[1], n_classes=n_classes, hidden=cfg.spec.hidden, dropout=cfg.spec.dropout)
    # Initial weights come from per-seed CPU generators, then move: a seed gives the same heads on every device.
    ens = Ensemble(spec, seeds_of(cfg)).to(runtime.device)
    init = Ensemble(spec, seeds_of(cfg)).to(runtime.device) if ("grand" in cfg.methods and cfg.grand_at == "init") else None
    train = TrainConfig(epochs=cfg.epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    Xt, yt = torch.from_numpy(X).to(runtime.device), torch.from_numpy(y).to(runtime.device)
    # Dropout draws from torch's global generator: seed it inside a fork so the caller's RNG is left as it was.
    with torch.random.fork_rng(devices=[]) if runtime.device == "cpu" else torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        with progress.bar(f"train {cfg.seeds} heads", total=cfg.epochs, unit="epochs") as bar:
            train_ensemble(ens, Xt, yt, train, on_epoch=lambda _: bar.advance())
    return ens, init


def snapshot_scores(X: np.ndarray, y: np.ndarray, n_classes: int, cfg, runtime, ids: list[str]) -> dict[str, np.ndarray]:
    """Train K heads for ``cfg.epochs`` epochs and score every row with each (eval mode): (K, n) arrays."""
    from curate.scores.base import finite

    ens, init = train_heads(X, y, n_classes, cfg, runtime)
    state = {k: v.detach().cpu() for k, v in ens.state_dict().items()}
    want_grand = "grand" in cfg.methods
    grand_state = None
    if want_grand:
        grand_state = state if init is None else {k: v.detach().cpu() for k, v in init.state_dict().items()}
    n = len(y)
    out = {k: np.empty((cfg.seeds, n)) for k in ("el2n", "ce", "grand")}
    chunk = runtime.chunk
    tasks = (RowTask(ens.spec.to_dict(), tuple(ens.seeds), state, grand_state, X[s:s + chunk], y[s:s + chunk], runtime.device)
             for s in range(0, n, chunk))
    s = 0
    with progress.bar("score", total=n) as bar:
        # The engine (runtime.executor(): threads, processes or Ray) returns the chunks in order.
        with contextlib.closing(runtime.executor().map(score_rows, tasks)) as parts:
            for part in parts:
                b = part["el2n"].shape[1]
                for k, v in part.items():
                    out[k][:, s:s + b] = v
                s += b
                bar.advance(b)
    for k in ("el2n", "ce") + (("grand",) if want_grand else ()):
        finite(f"snapshot {k}", out[k].T, ids)
    return out
