"""The irreducible-loss (IL) model of RHO-LOSS: a head trained only on holdout data.

Formats ``--il`` accepts:

- a directory from ``curate il train`` (``model.safetensors`` + ``config.json``);
- a cross-fit directory from ``curate il train --cross-fit`` (``half0/``, ``half1/`` and
  ``assignment.parquet`` saying which ids each half's model saw); every example is scored by
  the model that did not see it;
- a TorchScript file (``model.pt``) mapping embeddings to logits, with its label mapping as a
  JSON list (logit order) in ``labels.json`` next to it, or ``<file>.labels.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from curate import progress
from curate.errors import InputError
from curate.io.atomic import atomic_dir, check_output
from curate.io.labels import class_order, require_labels
from curate.io.parquet import embedding_array, read_provenance, read_table, write_table
from curate.io.provenance import base_record, file_sha256, fingerprint
from curate.models import store
from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import TrainConfig, stratified_split, train_with_validation
from curate.scores.rho import per_example_ce


@dataclass(frozen=True)
class ILConfig:
    spec: HeadSpec = field(default_factory=lambda: HeadSpec(arch="mlp"))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=100))
    val_fraction: float = 0.1
    patience: int = 5
    seed: int = 0


def read_labelled(path: str | Path, what: str) -> tuple[list[str], list[Any], np.ndarray, dict]:
    """ids, labels (Python values), embeddings (float32) and provenance of a labelled Parquet file."""
    table = read_table(path)
    for col in ("id", "embedding"):
        if col not in table.column_names:
            raise InputError(f"{path}: no {col!r} column; produce the file with `curate embed`")
    labels = require_labels(table, path, what)
    if len(table) == 0:
        raise InputError(f"{path}: the dataset is empty")
    X = embedding_array(table.column("embedding"), where=f"{path}: embedding")
    return table.column("id").to_pylist(), labels, X, read_provenance(path)


def encode_labels(labels: list[Any], classes: list[Any], where: str, model: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, v in enumerate(labels):
        j = index.get(v)
        if j is None:
            raise InputError(
                f"{where}: label {v!r} was never seen by the IL model {model} (it knows {classes[:10]}"
                f"{'...' if len(classes) > 10 else ''}); train the IL model on holdout data with every class"
            )
        out[i] = j
    return out


def _train_one(ids, labels, X, prov, cfg: ILConfig, source: str) -> tuple[torch.nn.Sequential, dict[str, Any]]:
    classes = class_order(labels)
    y = encode_labels(labels, classes, source, "")
    if len(classes) < 2:
        raise InputError(f"{source}: only one class ({classes[0]!r}); an IL model needs at least two")
    tr, va = stratified_split(y, cfg.val_fraction, cfg.seed)
    if len(va) == 0:
        raise InputError(f"{source}: --val-fraction {cfg.val_fraction} leaves no validation rows")
    spec = HeadSpec(arch=cfg.spec.arch, in_dim=X.shape[1], n_classes=len(classes), hidden=cfg.spec.hidden, dropout=cfg.spec.dropout)
    torch.manual_seed(cfg.seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    ens = Ensemble(spec, [cfg.seed])
    with progress.bar("il train", total=cfg.train.epochs, unit="epochs") as bar:
        ens, curve, best = train_with_validation(ens, Xt[tr], yt[tr], Xt[va], yt[va], cfg.train, cfg.patience,
                                                 on_epoch=lambda _: bar.advance())
    head = ens.member(0).eval()
    best_row = curve[best]
    config = {
        "kind": "head",
        "architecture": spec.to_dict(),
        "labels": classes,
        "embedding_model": prov.get("embedding_model"),
        "trained_on": {"path": source, "rows": len(ids), "train_rows": len(tr), "val_rows": len(va),
                       "fingerprint": fingerprint(source) if Path(source).exists() else None},
        "optimizer": cfg.train.to_dict(),
        "val_fraction": cfg.val_fraction, "patience": cfg.patience, "seed": cfg.seed,
        "selection": "lowest validation loss",
        "curve": curve, "chosen_epoch": best,
        "val_loss": best_row["val_loss"], "val_accuracy": best_row["val_accuracy"],
        "tool": base_record("il train"),
    }
    return head, config


def train_il(holdout: str | Path, out_dir: str | Path, cfg: ILConfig = ILConfig(), overwrite: bool = False) -> dict[str, Any]:
    """Train an IL model on HOLDOUT and write a model directory. Returns its config."""
    out_dir = check_output(out_dir, overwrite, inputs=(holdout,))
    ids, labels, X, prov = read_labelled(holdout, "il train")
    head, config = _train_one(ids, labels, X, prov, cfg, str(holdout))
    with atomic_dir(out_dir) as tmp:
        store.save_head(tmp, head, config)
    return config


def train_cross_fit(pool: str | Path, out_dir: str | Path, cfg: ILConfig = ILConfig(), overwrite: bool = False) -> dict[str, Any]:
    """No holdout: split POOL into two class-balanced halves and train one IL model on each."""
    out_dir = check_output(out_dir, overwrite, inputs=(pool,))
    ids, labels, X, prov = read_labelled(pool, "il train --cross-fit")
    keys = np.array([str(v) for v in labels])
    _, y = np.unique(keys, return_inverse=True)
    half1, half0 = stratified_split(y, 0.5, cfg.seed + 7919)  # class-balanced halves
    half = np.zeros(len(ids), dtype=np.int8)
    half[half1] = 1
    configs = []
    with atomic_dir(out_dir) as tmp:
        for h, idx in ((0, half0), (1, half1)):
            head, config = _train_one([ids[i] for i in idx], [labels[i] for i in idx], X[idx], prov, cfg, str(pool))
            store.save_head(tmp / f"half{h}", head, config)
            configs.append(config)
        write_table(pa.table({"id": pa.array(ids, pa.string()), "half": pa.array(half, pa.int8())}), tmp / "assignment.parquet")
        top = {"kind": "cross-fit", "halves": ["half0", "half1"], "assignment": "assignment.parquet",
               "rule": "an example in half h is scored by the model of the other half",
               "labels": configs[0]["labels"], "embedding_model": prov.get("embedding_model"),
               "architecture": configs[0]["architecture"], "tool": base_record("il train --cross-fit"),
               "val_loss": [c["val_loss"] for c in configs], "chosen_epoch": [c["chosen_epoch"] for c in configs]}
        (tmp / store.CONFIG).write_text(json.dumps(top, indent=1, sort_keys=True, default=str))
    return top


class ILModel:
    """A loaded IL model: per-example losses for (id, label, embedding) rows."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such IL model (a directory from `curate il train`, or a TorchScript file)")
        if self.path.is_file():
            self._load_torchscript()
        else:
            self.config = store.read_config(self.path)
            self.kind = self.config.get("kind", "head")
            if self.kind == "cross-fit":
                self.heads = [store.load_head(self.path / h)[0] for h in self.config["halves"]]
                assign = read_table(self.path / self.config["assignment"])
                self.assignment = dict(zip(assign.column("id").to_pylist(), assign.column("half").to_pylist()))
                files = [self.path / h / store.WEIGHTS for h in self.config["halves"]] + [self.path / self.config["assignment"]]
            else:
                self.heads = [store.load_head(self.path)[0]]
                files = [self.path / store.WEIGHTS]
            self.labels = self.config["labels"]
            self.dimension = int(self.config["architecture"]["in_dim"])
            h = hashlib.sha256()
            for f in files:
                h.update(file_sha256(f).encode())
            self.sha256 = h.hexdigest()

    def _load_torchscript(self) -> None:
        candidates = [self.path.with_name(self.path.name + ".labels.json"), self.path.parent / "labels.json"]
        lab = next((c for c in candidates if c.exists()), None)
        if lab is None:
            raise InputError(f"{self.path}: a TorchScript IL model needs its label mapping as a JSON list in {candidates[1]}")
        self.labels = json.loads(lab.read_text())
        self.heads = [store.load_torchscript(self.path)]
        self.kind, self.config, self.dimension = "torchscript", {"labels": self.labels}, None
        self.sha256 = file_sha256(self.path)

    def check_dimension(self, d: int, where: str) -> None:
        if self.dimension is None:
            with torch.no_grad():
                try:
                    out = self.heads[0](torch.zeros(1, d))
                except Exception as e:
                    raise InputError(f"{where}: embeddings have {d} dimensions, which the TorchScript IL model {self.path} rejects ({type(e).__name__})") from None
            if out.shape[-1] != len(self.labels):
                raise InputError(f"{self.path}: the module gives {out.shape[-1]} logits but labels.json lists {len(self.labels)} labels")
            self.dimension = d
        elif d != self.dimension:
            raise InputError(f"{where}: embeddings have {d} dimensions but the IL model {self.path} expects {self.dimension}; "
                             "embed the pool and the holdout with the same model")

    @torch.no_grad()
    def losses(self, ids: list[str], labels: list[Any], X: np.ndarray, where: str) -> np.ndarray:
        """Per-example CE (float64), each example scored by a model that never saw it."""
        self.check_dimension(X.shape[1], where)
        y = torch.from_numpy(encode_labels(labels, self.labels, where, str(self.path)))
        Xt = torch.from_numpy(X)
        out = np.empty(len(ids), dtype=np.float64)
        if self.kind == "cross-fit":
            halves = np.empty(len(ids), dtype=np.int64)
            for i, id_ in enumerate(ids):
                h = self.assignment.get(id_)
                if h is None:
                    raise InputError(f"{where}: id {id_!r} is not in the cross-fit model {self.path}; "
                                     "a cross-fit IL model scores only the pool it was trained on")
                halves[i] = h
            groups = [(np.flatnonzero(halves == h), self.heads[1 - h]) for h in (0, 1)]
        else:
            groups = [(np.arange(len(ids)), self.heads[0])]
        for idx, model in groups:
            for s in range(0, len(idx), 65536):
                part = idx[s:s + 65536]
                logits = model(Xt[part]).double()
                out[part] = per_example_ce(logits, y[part]).numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "sha256": self.sha256,
                "architecture": self.config.get("architecture"), "chosen_epoch": self.config.get("chosen_epoch"),
                "val_loss": self.config.get("val_loss")}


def info(path: str | Path) -> dict[str, Any]:
    model = ILModel(path)
    cfg = dict(model.config)
    cfg.pop("curve", None)
    return {"path": str(model.path), "kind": model.kind, "sha256": model.sha256, "labels": model.labels,
            "dimension": model.dimension, **{k: v for k, v in cfg.items() if k not in ("labels",)}}
