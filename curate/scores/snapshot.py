"""The K snapshot heads shared by EL2N, GraNd and RHO's target term: train once, score every row.

The per-row pass is :func:`score_rows` mapped over a generator of plain, picklable
:class:`RowTask` s (head states as CPU tensors, a row range of the spilled embedding matrix that
the task reads itself, and its labels), so an engine can ship small tasks to other processes or
machines and get the same bytes back as the in-process loop. Results are reduced over the K
heads as they arrive (mean, and std with ``--std``): memory is a few n-length float64 columns,
never (K, n).

Memory bound of training and scoring, none of it growing with n (b: --batch-size, c: --chunk,
d: dimension, P: parameters of one head, C: classes, h: widest hidden layer, M: the embedding
map's budget, 512 MiB of file pages): training 16 K P (weights, gradients, two AdamW moments) + 4 K b (d + 2h
+ C) (a batch and its activations) + 8 MiB (a block of the shuffled order) + M; the
per-row pass 4 c d + 4 K c (2h + 2C) x 2 (activations and GraNd's gradients) + 24 K c (its
outputs). What does grow with n, by design: the labels as class codes (n x 2 bytes, int16),
and each head's permutation while it is drawn (n x 12: int64, then its int32 copy; one head at a
time): about 14 bytes a row at the peak. The score columns are appended chunk by
chunk to private files (:class:`~curate.io.columns.DiskColumn`, n x 8 bytes of disk each) and
read back by row range when the output is written; the ids are read from the pool only to name
a row in a message.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from curate import progress
from curate.io.columns import DiskColumn, LazyColumn
from curate.io.matrix import Embeddings, MatrixRows
from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import TrainConfig, train_ensemble
from curate.scores.el2n import el2n
from curate.scores.grand import grand_and_logits
from curate.scores.rho import per_example_ce


@dataclass(frozen=True)
class OverHeads:
    """A per-head score (K, n) kept only as its reductions over the K heads, each an (n,) float64
    column on disk (``means``, and ``stds`` with ``--std``), read by row range.

    ``mean(0)`` / ``std(0)`` load what the (K, n) array's would give, bit for bit (numpy
    reduces axis 0 row by row, so chunks of columns reduce identically): n x 8 bytes, for tests.
    """

    means: LazyColumn
    stds: LazyColumn | None

    def mean(self, axis: int = 0) -> np.ndarray:
        assert axis == 0, "only the reduction over heads is kept"
        return self.means.to_numpy()

    def std(self, axis: int = 0) -> np.ndarray:
        assert axis == 0 and self.stds is not None, "the std over heads is kept only with --std"
        return self.stds.to_numpy()

    def close(self) -> None:
        for c in (self.means, self.stds):
            if c is not None:
                c.close()


@dataclass(frozen=True)
class RowTask:
    """One chunk of the per-row pass: everything it needs, nothing else (picklable)."""

    spec: dict[str, Any]  # HeadSpec.to_dict()
    seeds: tuple[int, ...]
    state: dict[str, torch.Tensor]  # trained heads (CPU)
    grand_state: dict[str, torch.Tensor] | None  # heads GraNd is taken at (None: no GraNd)
    X: np.ndarray | MatrixRows  # (b, d) float32 rows, or where to read them
    y: np.ndarray  # (b,) int64
    device: str = "cpu"


def _ensemble(spec: dict, seeds, state, device) -> Ensemble:
    # The heads hold the task's tensors (no initial weights drawn only to be overwritten, no copy
    # on CPU): building them costs microseconds, so every chunk builds its own and no worker keeps
    # a cache that a later run's state could be confused with.
    return Ensemble.from_state(HeadSpec.from_dict(spec), list(seeds), state).to(device).eval()


def score_rows(task: RowTask) -> dict[str, np.ndarray]:
    """EL2N, CE and (when asked) GraNd of every member on the chunk: each (K, b) float64."""
    ens = _ensemble(task.spec, task.seeds, task.state, task.device)
    X = task.X if isinstance(task.X, np.ndarray) else task.X.read()
    xb = torch.from_numpy(X).to(task.device)
    yb = torch.from_numpy(task.y).to(task.device)
    out = {}
    if task.grand_state is task.state:
        # GraNd at the checkpoint: its forward is the eval forward (same bits), so one pass gives all three.
        grand, logits = grand_and_logits(ens, xb, yb)
        out["grand"] = grand.cpu().numpy()
    else:
        with torch.no_grad():
            logits = ens(xb)
        if task.grand_state is not None:
            at = _ensemble(task.spec, task.seeds, task.grand_state, task.device)
            out["grand"] = grand_and_logits(at, xb, yb)[0].cpu().numpy()
    return {"el2n": el2n(logits, yb).cpu().numpy(), "ce": per_example_ce(logits, yb).cpu().numpy(), **out}


def seeds_of(cfg) -> list[int]:
    return [cfg.seed * 1000 + k for k in range(cfg.seeds)]


def train_heads(X: np.ndarray | Embeddings, y: np.ndarray, n_classes: int, cfg, runtime) -> tuple[Ensemble, Ensemble | None]:
    """The K trained heads on ``runtime.device`` and, for GraNd at init, the untrained ones.

    ``X``: (n, d) float32 in memory, or ``Embeddings`` streamed from disk (same heads).
    """
    d = X.shape[1] if isinstance(X, np.ndarray) else X.d
    spec = HeadSpec(arch=cfg.spec.arch, in_dim=d, n_classes=n_classes, hidden=cfg.spec.hidden, dropout=cfg.spec.dropout)
    # Initial weights come from per-seed CPU generators, then move: a seed gives the same heads on every device.
    ens = Ensemble(spec, seeds_of(cfg)).to(runtime.device)
    init = Ensemble(spec, seeds_of(cfg)).to(runtime.device) if ("grand" in cfg.methods and cfg.grand_at == "init") else None
    train = TrainConfig(epochs=cfg.epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    Xt = torch.from_numpy(X).to(runtime.device) if isinstance(X, np.ndarray) else X
    # Streamed training widens the narrow class codes per batch (cross-entropy wants int64);
    # the in-memory path indexes a tensor, so it gets an int64 copy.
    yt = torch.from_numpy(np.ascontiguousarray(y) if isinstance(X, Embeddings) else np.asarray(y, dtype=np.int64)).to(runtime.device)
    # Dropout draws from torch's global generator: seed it inside a fork so the caller's RNG is left as it was.
    with torch.random.fork_rng(devices=[]) if runtime.device == "cpu" else torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        with progress.bar(f"train {cfg.seeds} heads", total=cfg.epochs, unit="epochs") as bar:
            train_ensemble(ens, Xt, yt, train, on_epoch=lambda _: bar.advance())
    return ens, init


def row_tasks(ens: Ensemble, grand_state, X: Embeddings, y: np.ndarray, chunk: int, device: str,
              ship_rows: bool = False) -> Iterator[RowTask]:
    """The per-row pass as tasks over consecutive row ranges of ``chunk`` rows, in pool order.

    ``y``: (n,) class indices of any integer type (each task gets its slice as int64).

    ``ship_rows``: the task carries its rows rather than a range of the spilled file, for engines
    whose workers may run on other machines (the file is on this one); one chunk per task in flight.
    """
    state = {k: v.detach().cpu() for k, v in ens.state_dict().items()}
    # "trained": GraNd at the checkpoint, on the very same state (score_rows then builds one ensemble, not two).
    grand = state if grand_state == "trained" else grand_state
    for s in range(0, X.n, chunk):
        rows = X.rows(s, s + chunk)
        yield RowTask(ens.spec.to_dict(), tuple(ens.seeds), state, grand, rows.read() if ship_rows else rows,
                      y[s:s + chunk].astype(np.int64), device)


def snapshot_scores(X: Embeddings, y: np.ndarray, n_classes: int, cfg, runtime, ids) -> dict[str, OverHeads]:
    """Train K heads for ``cfg.epochs`` epochs and score every row with each (eval mode).

    Returns ``el2n``, ``ce`` and (with GraNd) ``grand`` as :class:`OverHeads`: the mean over
    the K heads (and with ``cfg.std`` the population std), each (n,) float64, equal bit for bit
    to ``v.mean(0)`` / ``v.std(0)`` of the (K, n) per-head array, written chunk by chunk to
    private files (:class:`~curate.io.columns.DiskColumn`: no n-length array is held).
    ``y``: (n,) class indices, any integer type. ``ids``: (n,) sliceable, read only for a message.
    """
    from curate.scores.base import finite

    ens, init = train_heads(X, y, n_classes, cfg, runtime)
    want_grand = "grand" in cfg.methods
    grand_state = None
    if want_grand:
        grand_state = "trained" if init is None else {k: v.detach().cpu() for k, v in init.state_dict().items()}
    keys = ("el2n", "ce") + (("grand",) if want_grand else ())
    n = X.n
    out = {k: DiskColumn(np.float64) for k in keys}
    if cfg.std:
        out.update({f"{k}_std": DiskColumn(np.float64) for k in keys})
    start = 0
    with progress.bar("score", total=n) as bar:
        # The engine (runtime.executor(): threads, processes or Ray) returns the chunks in order.
        tasks = row_tasks(ens, grand_state, X, y, runtime.chunk, runtime.device, ship_rows=runtime.engine == "ray")
        with contextlib.closing(runtime.executor().map(score_rows, tasks)) as parts:
            for part in parts:
                b = part["el2n"].shape[1]
                where = ids[start:start + b]
                for k in keys:
                    v = finite(f"snapshot {k}", part[k].T, where, start).T
                    out[k].append(v.mean(0))
                    if cfg.std:
                        out[f"{k}_std"].append(v.std(0))
                start += b
                bar.advance(b)
    return {k: OverHeads(out[k], out.get(f"{k}_std")) for k in keys}
