"""`curate train`: train a head on a pool's embeddings with online batch selection (RHO-LOSS).

Each step takes the next ``big_batch`` rows of a seeded per-epoch permutation of the pool (the
remainder of an epoch that does not fill a big batch is skipped), lets an
:class:`curate.online.OnlineSelector` pick ``round(ratio * big_batch)`` of them with the current
model, and takes one AdamW step on the mean CE of the picked rows. Irreducible losses are
computed once, before the first step, by the IL model (as the paper's Algorithm 1).

The run directory (written aside, then renamed into place):

- ``model.safetensors`` + ``config.json``: the final head, loadable with
  :func:`curate.models.store.load_head`; the config holds the run's options and provenance;
- ``selected.parquet``: one row per selected point per step: ``step`` (int32, 1-based),
  ``rank`` (int32, 0 = selected first), ``id``, ``score`` (float64, the selection score; null for
  ``uniform``), ``il_loss`` (float64, null without an IL model);
- ``curve.parquet``: one row per evaluation (step 0, every ``eval_every`` steps, the last step):
  ``step``, ``train_loss`` (mean CE of the picked rows over the steps since the previous row,
  null at step 0), ``eval_loss``, ``eval_accuracy`` (null without an evaluation set).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import torch
from torch.nn import functional as F

from curate import progress
from curate.errors import InputError
from curate.il import ILModel, encode_labels, read_labelled
from curate.io.atomic import atomic_dir, check_output
from curate.io.labels import class_order
from curate.io.parquet import write_table
from curate.io.provenance import base_record, fingerprint
from curate.models import store
from curate.models.heads import Ensemble, HeadSpec
from curate.online import METHODS, OnlineSelector, selected_count
from curate.runtime import CPU, Runtime


@dataclass(frozen=True)
class OnlineConfig:
    """Options of an online-selection run (validated here, ranges as in ``curate train --help``)."""

    method: str = "rho"
    ratio: float = 0.1
    big_batch: int = 320
    steps: int = 1000
    eval_every: int = 100
    spec: HeadSpec = field(default_factory=lambda: HeadSpec(arch="mlp"))
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"--select {self.method}: expected one of {', '.join(METHODS)}")
        if not 0 < self.ratio <= 1:
            raise InputError(f"--ratio {self.ratio}: must be in (0, 1]")
        for name, v in (("--big-batch", self.big_batch), ("--steps", self.steps), ("--eval-every", self.eval_every)):
            if v < 1:
                raise InputError(f"{name} {v}: must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        return d


def _eval_set(path: str | Path, classes: list, dim: int, pool_prov: dict) -> tuple[torch.Tensor, torch.Tensor]:
    _, labels, X, prov = read_labelled(path, "train --eval")
    if X.shape[1] != dim:
        raise InputError(f"{path}: embeddings have {X.shape[1]} dimensions but the pool has {dim}; embed both with the same model")
    a, b = (pool_prov.get("embedding_model") or {}).get("sha256"), (prov.get("embedding_model") or {}).get("sha256")
    if a and b and a != b:
        raise InputError(f"{path}: embedded with a different model (sha256 {b[:12]}) than the pool ({a[:12]}); "
                         "re-run `curate embed` on it with the pool's model")
    y = encode_labels(labels, classes, str(path), "trained on the pool")
    return torch.from_numpy(X), torch.from_numpy(y)


@torch.no_grad()
def _evaluate(model, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = torch.cat([model(X[i:i + 65536]) for i in range(0, len(X), 65536)])
    return float(F.cross_entropy(logits.double(), y)), float((logits.argmax(1) == y).double().mean())


def train_online(pool: str | Path, out_dir: str | Path, cfg: OnlineConfig = OnlineConfig(), il: str | Path | None = None,
                 eval_path: str | Path | None = None, trust_torchscript: bool = False, overwrite: bool = False,
                 runtime: Runtime = CPU, on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train a head on POOL with online selection and write the run directory; returns a summary.

    ``il``: IL model path (required for ``rho``; with another method its losses are only logged).
    ``on_step(step, seconds)``: called after each step with the step's wall time (selection and
    update, evaluation excluded), for benchmarks.
    """
    out_dir = check_output(out_dir, overwrite, inputs=tuple(p for p in (pool, il, eval_path) if p))
    ids, labels, X, prov = read_labelled(pool, "train")
    if len(set(ids)) != len(ids):
        seen: set = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise InputError(f"{pool}: duplicate id {dup!r}; ids must be unique")
    n, dim = X.shape
    if cfg.big_batch > n:
        raise InputError(f"--big-batch {cfg.big_batch}: larger than the pool ({n} rows); use at most {n}")
    classes = class_order(labels)
    if len(classes) < 2:
        raise InputError(f"{pool}: only one class ({classes[0]!r}); training a classifier needs at least two")
    y_np = encode_labels(labels, classes, str(pool), "")
    if cfg.method == "rho" and il is None:
        raise InputError("--select rho needs --il IL_DIR (train one with `curate il train HOLDOUT.parquet -o IL_DIR`)")
    il_model = ILModel(il, trust_torchscript=trust_torchscript) if il is not None else None
    il_loss = il_model.losses(ids, labels, X, str(pool)) if il_model is not None else None
    evals = _eval_set(eval_path, classes, dim, prov) if eval_path is not None else None

    dev = runtime.torch_device
    spec = HeadSpec(arch=cfg.spec.arch, in_dim=dim, n_classes=len(classes), hidden=cfg.spec.hidden, dropout=cfg.spec.dropout)
    Xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(y_np).to(dev)
    if evals is not None:
        evals = (evals[0].to(dev), evals[1].to(dev))
    selector = OnlineSelector(cfg.method, cfg.ratio, torch.from_numpy(il_loss).to(dev) if il_loss is not None else None, cfg.seed)
    k = selected_count(cfg.ratio, cfg.big_batch)
    per_epoch = n // cfg.big_batch
    order = np.random.default_rng(cfg.seed)

    log_step, log_rank, log_row, log_score = [], [], [], []
    curve: list[dict[str, Any]] = []
    losses_since: list[float] = []

    def record(step: int) -> None:
        ev = _evaluate(model, *evals) if evals is not None else (None, None)
        curve.append({"step": step, "train_loss": float(np.mean(losses_since)) if losses_since else None,
                      "eval_loss": ev[0], "eval_accuracy": ev[1]})
        losses_since.clear()

    # Dropout draws from torch's global generator: seed it inside a fork so the caller's RNG is left as it was.
    fork = torch.random.fork_rng(devices=[]) if torch.device(dev).type == "cpu" else torch.random.fork_rng()
    with fork, runtime.activate(), progress.bar(f"train ({cfg.method})", total=cfg.steps, unit="steps") as bar:
        torch.manual_seed(cfg.seed)
        model = Ensemble(spec, [cfg.seed]).member(0).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        record(0)
        perm = None
        for step in range(1, cfg.steps + 1):
            t0 = time.perf_counter()
            slot = (step - 1) % per_epoch
            if slot == 0:
                perm = torch.from_numpy(order.permutation(n)).to(dev)
            big = perm[slot * cfg.big_batch:(slot + 1) * cfg.big_batch]
            xb, yb = Xt[big], yt[big]
            pick = selector.select(model, xb, yb, ids=big)
            scores = selector.last_scores
            model.train()
            loss = F.cross_entropy(model(xb[pick]), yb[pick])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seconds = time.perf_counter() - t0
            losses_since.append(float(loss.detach()))
            log_step.append(np.full(len(pick), step, np.int32))
            log_rank.append(np.arange(len(pick), dtype=np.int32))
            log_row.append(big[pick].cpu().numpy())
            log_score.append(scores[pick].cpu().numpy() if scores is not None else np.full(len(pick), np.nan))
            if on_step:
                on_step(step, seconds)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                record(step)
                last = curve[-1]
                if last["eval_accuracy"] is not None:
                    bar.update(description=f"train ({cfg.method}, eval accuracy {last['eval_accuracy']:.3f})")
            bar.advance()

    rows = np.concatenate(log_row)
    score_col = np.concatenate(log_score)
    ids_arr = np.array(ids, dtype=object)
    selected = pa.table({
        "step": pa.array(np.concatenate(log_step)),
        "rank": pa.array(np.concatenate(log_rank)),
        "id": pa.array(ids_arr[rows].tolist(), pa.string()),
        "score": pa.array(score_col, pa.float64(), mask=np.isnan(score_col)) if cfg.method != "uniform"
        else pa.nulls(len(rows), pa.float64()),
        "il_loss": pa.array(il_loss[rows], pa.float64()) if il_loss is not None else pa.nulls(len(rows), pa.float64()),
    })
    curve_t = pa.table({
        "step": pa.array([c["step"] for c in curve], pa.int32()),
        "train_loss": pa.array([c["train_loss"] for c in curve], pa.float64()),
        "eval_loss": pa.array([c["eval_loss"] for c in curve], pa.float64()),
        "eval_accuracy": pa.array([c["eval_accuracy"] for c in curve], pa.float64()),
    })
    record_ = {**base_record("train"), "pool": fingerprint(pool), "eval": fingerprint(eval_path) if eval_path else None,
               "il_model": il_model.describe() if il_model is not None else None, "config": cfg.to_dict(),
               "selected_per_step": k, "steps_per_epoch": per_epoch, "runtime": runtime.to_dict(),
               "embedding_model": prov.get("embedding_model")}
    final = curve[-1]
    config = {"kind": "head", "architecture": spec.to_dict(), "labels": classes, "embedding_model": prov.get("embedding_model"),
              "trained_with": "online selection", "run": record_,
              "final": {"step": final["step"], "eval_loss": final["eval_loss"], "eval_accuracy": final["eval_accuracy"]}}
    with atomic_dir(out_dir) as tmp:
        store.save_head(tmp, model.cpu().eval(), config)
        write_table(selected, tmp / "selected.parquet", record_)
        write_table(curve_t, tmp / "curve.parquet", record_)
    return {"output": str(out_dir), "method": cfg.method, "steps": cfg.steps, "selected_per_step": k,
            "big_batch": cfg.big_batch, "final_eval_accuracy": final["eval_accuracy"], "final_eval_loss": final["eval_loss"],
            "curve": curve}
