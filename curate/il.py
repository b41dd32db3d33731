"""The irreducible-loss (IL) model of RHO-LOSS: a head trained only on holdout data.

Formats ``--il`` accepts:

- a directory from ``curate il train`` (``model.safetensors`` + ``config.json``);
- a cross-fit directory from ``curate il train --cross-fit`` (``half0/``, ``half1/`` and
  ``assignment.parquet`` saying which ids each half's model saw); every example is scored by
  the model that did not see it;
- a TorchScript file (``model.pt``) mapping embeddings to logits, with its label mapping as a
  JSON list (logit order) in ``labels.json`` next to it, or ``<file>.labels.json``. Loading
  one executes code stored in the file, so it needs ``trust_torchscript=True``
  (``--trust-torchscript``); without it only what can be read without loading is available.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curate import progress
from curate.errors import InputError
from curate.il_assignment import Assignment
from curate.io.atomic import atomic_dir, atomic_path, check_output
from curate.io.columns import DiskColumn
from curate.io.label_codes import LabelCodes, read_label_codes
from curate.io.labels import require_labels
from curate.io.matrix import Embeddings
from curate.io.parquet import (ROW_GROUP_ROWS, WRITE_OPTIONS, embedding_array, open_parquet, open_stream, read_provenance,
                               read_table)
from curate.io.provenance import base_record, file_sha256, fingerprint
from curate.models import store
from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import RowSubset, TrainConfig, stratified_split, train_with_validation
from curate.runtime import CPU, Runtime
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


@dataclass(frozen=True)
class _Split:
    """One IL model's examples as :func:`_train_one` reads them: their ``classes`` (class_order of
    their labels), how many ``rows``, and for each class-stratified part (train, val) the file's
    row numbers (sorted int64) and the class indices (int64). Memory: 16 bytes an example."""

    classes: list[Any]
    rows: int
    train_rows: np.ndarray
    train_y: np.ndarray
    val_rows: np.ndarray
    val_y: np.ndarray


def _read(path: str | Path, what: str) -> tuple[LabelCodes, dict]:
    """The labels of a labelled Parquet file as codes, and its provenance; the embeddings are
    only checked to exist here (they are validated while spilled, see :func:`_spill`)."""
    names = open_parquet(path).schema_arrow.names
    for col in ("id", "embedding"):
        if col not in names:
            raise InputError(f"{path}: no {col!r} column; produce the file with `curate embed`")
    labels = read_label_codes(path, what)
    if len(labels.codes) == 0:
        raise InputError(f"{path}: the dataset is empty")
    return labels, read_provenance(path)


def _split(labels: LabelCodes, rows: np.ndarray | None, cfg: ILConfig, source: str) -> _Split:
    """The train/val split of the file's ``rows`` ((m,) sorted int64; None: every row)."""
    classes, y = labels.classes(rows)
    if len(classes) < 2:
        raise InputError(f"{source}: only one class ({classes[0]!r}); an IL model needs at least two")
    tr, va = stratified_split(y, cfg.val_fraction, cfg.seed)
    if len(va) == 0:
        raise InputError(f"{source}: --val-fraction {cfg.val_fraction} leaves no validation rows")
    train_y, val_y = y[tr], y[va]
    del y  # one n-length array fewer at the peak
    if rows is not None:
        tr, va = rows[tr], rows[va]
    return _Split(classes, len(train_y) + len(val_y), tr, train_y, va, val_y)


def _spill(path: str | Path, runtime: Runtime) -> Embeddings:
    """The file's embeddings in a private float32 matrix file (validated, deleted on close)."""
    return Embeddings.from_parquet(path, batch_rows=min(65536, max(1024, runtime.chunk)))


def _train_one(E: Embeddings, split: _Split, prov, cfg: ILConfig, source: str, runtime: Runtime) -> tuple[torch.nn.Sequential, dict[str, Any]]:
    """Train one IL head on ``split``'s rows of ``E``, read from disk batch by batch.

    The same model and curve as training on the rows in memory (``train_with_validation``'s two
    forms). Memory: a few (train rows + val rows) x 8-byte index and label arrays, and one batch.
    """
    classes = split.classes
    spec = HeadSpec(arch=cfg.spec.arch, in_dim=E.d, n_classes=len(classes), hidden=cfg.spec.hidden, dropout=cfg.spec.dropout)
    dev = runtime.torch_device
    Xtr, Xva = RowSubset(E, split.train_rows), RowSubset(E, split.val_rows)
    ytr, yva = torch.from_numpy(split.train_y).to(dev), torch.from_numpy(split.val_y).to(dev)
    ens = Ensemble(spec, [cfg.seed]).to(dev)
    # Dropout draws from torch's global generator: seed it inside a fork so the caller's RNG is left as it was.
    with (torch.random.fork_rng(devices=[]) if dev.type == "cpu" else torch.random.fork_rng()), \
            progress.bar("il train", total=cfg.train.epochs, unit="epochs") as bar, runtime.activate():
        torch.manual_seed(cfg.seed)
        ens, curve, best = train_with_validation(ens, Xtr, ytr, Xva, yva, cfg.train, cfg.patience,
                                                 on_epoch=lambda row: bar.update(
                                                     advance=1, description=f"il train (val loss {row['val_loss']:.4f})"))
        ran = len(curve) - 1
        if ran < cfg.train.epochs:
            # Early stop: the bar ends full at the epochs that ran, saying so, not stuck part-way.
            bar.update(total=ran, completed=ran, description=f"il train (stopped early at epoch {ran}, best epoch {best})")
    head = ens.member(0).cpu().eval()
    best_row = curve[best]
    config = {
        "kind": "head",
        "architecture": spec.to_dict(),
        "labels": classes,
        "embedding_model": prov.get("embedding_model"),
        "trained_on": {"path": source, "rows": split.rows, "train_rows": Xtr.n, "val_rows": Xva.n,
                       "fingerprint": fingerprint(source) if Path(source).exists() else None},
        "optimizer": cfg.train.to_dict(),
        "val_fraction": cfg.val_fraction, "patience": cfg.patience, "seed": cfg.seed,
        "selection": "lowest validation loss",
        "curve": curve, "chosen_epoch": best,
        "val_loss": best_row["val_loss"], "val_accuracy": best_row["val_accuracy"],
        "tool": base_record("il train"),
        "runtime": runtime.to_dict(),
    }
    return head, config


def train_il(holdout: str | Path, out_dir: str | Path, cfg: ILConfig = ILConfig(), overwrite: bool = False,
             runtime: Runtime = CPU) -> dict[str, Any]:
    """Train an IL model on HOLDOUT and write a model directory. Returns its config.

    Training runs on ``runtime.device`` with ``runtime.threads`` torch threads (restored after).
    The embeddings are read from a spilled copy on disk: memory is about n x 40 bytes (labels
    as codes, index arrays, the shuffled order) plus one batch, not n x d x 4.
    """
    out_dir = check_output(out_dir, overwrite, inputs=(holdout,))
    labels, prov = _read(holdout, "il train")
    split = _split(labels, None, cfg, str(holdout))  # before the spill: a bad split fails at once
    del labels
    with _spill(holdout, runtime) as E:
        head, config = _train_one(E, split, prov, cfg, str(holdout), runtime)
    with atomic_dir(out_dir) as tmp:
        store.save_head(tmp, head, config)
    return config


def train_cross_fit(pool: str | Path, out_dir: str | Path, cfg: ILConfig = ILConfig(), overwrite: bool = False,
                    runtime: Runtime = CPU) -> dict[str, Any]:
    """No holdout: split POOL into two class-balanced halves and train one IL model on each.

    Streamed like :func:`train_il`; the ids are read only to write ``assignment.parquet``, batch
    by batch. Memory: about n x 30 bytes plus one batch.
    """
    out_dir = check_output(out_dir, overwrite, inputs=(pool,))
    labels, prov = _read(pool, "il train --cross-fit")
    # Class-balanced halves, stratified by the labels' text as they have always been drawn.
    half = np.zeros(len(labels.codes), dtype=np.int8)
    half[stratified_split(labels.text_codes(), 0.5, cfg.seed + 7919)[0]] = 1
    configs = []
    with atomic_dir(out_dir) as tmp, contextlib.ExitStack() as stack:
        E = None
        for h in (0, 1):
            split = _split(labels, np.flatnonzero(half == h), cfg, str(pool))
            if E is None:  # after the first half's checks: a bad split fails before the spill
                E = stack.enter_context(_spill(pool, runtime))
            head, config = _train_one(E, split, prov, cfg, str(pool), runtime)
            del split
            store.save_head(tmp / f"half{h}", head, config)
            configs.append(config)
        stack.close()  # the spilled matrix goes before the assignment is written
        del labels
        _write_assignment(pool, half, tmp / "assignment.parquet")
        top = {"kind": "cross-fit", "halves": ["half0", "half1"], "assignment": "assignment.parquet",
               "rule": "an example in half h is scored by the model of the other half",
               "labels": configs[0]["labels"], "embedding_model": prov.get("embedding_model"),
               "architecture": configs[0]["architecture"], "tool": base_record("il train --cross-fit"),
               "val_loss": [c["val_loss"] for c in configs], "chosen_epoch": [c["chosen_epoch"] for c in configs]}
        (tmp / store.CONFIG).write_text(json.dumps(top, indent=1, sort_keys=True, default=str))
    return top


def _write_assignment(pool: str | Path, half: np.ndarray, path: Path) -> None:
    """``assignment.parquet`` (id string, half int8) written batch by batch: the same file as writing
    the whole table (``write_table``'s options and row groups), one row group held at a time."""
    schema = pa.schema([("id", pa.string()), ("half", pa.int8())])
    try:
        batches = open_stream(pool).iter_batches(batch_size=ROW_GROUP_ROWS, columns=["id"], use_threads=False)
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as writer:
            start = 0
            for batch in batches:
                stop = start + batch.num_rows
                ids = batch.column(0).cast(pa.string())
                writer.write_table(pa.table([ids, pa.array(half[start:stop], pa.int8())], schema=schema),
                                   row_group_size=ROW_GROUP_ROWS)
                start = stop
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{pool}: could not read the ids ({type(e).__name__}: {e})") from None


class ILModel:
    """A loaded IL model: per-example losses for (id, label, embedding) rows.

    ``trust_torchscript``: allow loading a TorchScript file, which executes code inside it.
    """

    def __init__(self, path: str | Path, trust_torchscript: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such IL model (a directory from `curate il train`, or a TorchScript file)")
        if self.path.is_file():
            _check_model_file(self.path)
            self.labels = _torchscript_labels(self.path)
            self.heads = [store.load_torchscript(self.path, trust=trust_torchscript)]
            self.kind, self.config, self.dimension = "torchscript", {"labels": self.labels}, None
            self.sha256 = file_sha256(self.path)
            return
        self.config = store.read_config(self.path)
        cfg_path = self.path / store.CONFIG
        self.kind = self.config.get("kind", "head")
        if self.kind == "cross-fit":
            halves = self.config.get("halves")
            assignment = self.config.get("assignment")
            if not (isinstance(halves, list) and len(halves) == 2 and all(isinstance(h, str) for h in halves)):
                raise InputError(f"{cfg_path}: key 'halves' must list the two half directories; re-create the model with `curate il train --cross-fit`")
            if not isinstance(assignment, str):
                raise InputError(f"{cfg_path}: key 'assignment' must name the assignment Parquet; re-create the model with `curate il train --cross-fit`")
            loaded = [store.load_head(self.path / h) for h in halves]
            self.heads = [h for h, _ in loaded]
            # Read when scoring, streamed: never a Python object per row.
            self.assignment = Assignment(self.path / assignment, self.path)
            files = [self.path / h / store.WEIGHTS for h in halves] + [self.path / assignment]
            self.labels = store.check_labels(self.config, cfg_path, None)
            if any(c.get("labels") != self.labels for _, c in loaded):
                raise InputError(f"{cfg_path}: key 'labels' differs from the halves' labels; re-create the model with `curate il train --cross-fit`")
            dims = {c["architecture"]["in_dim"] for _, c in loaded}
            if len(dims) != 1:
                raise InputError(f"{self.path}: the two halves take different input dimensions {sorted(dims)}; re-create the model with `curate il train --cross-fit`")
            self.dimension = dims.pop()
        elif self.kind == "head":
            self.heads = [store.load_head(self.path)[0]]
            files = [self.path / store.WEIGHTS]
            self.labels = self.config["labels"]
            self.dimension = int(self.config["architecture"]["in_dim"])
        else:
            raise InputError(f"{cfg_path}: key 'kind' is {self.kind!r}; expected 'head' or 'cross-fit'")
        h = hashlib.sha256()
        for f in files:
            h.update(file_sha256(f).encode())
        self.sha256 = h.hexdigest()

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
        """Per-example CE (float64, (N,)), each example scored by a model that never saw it."""
        self.check_dimension(X.shape[1], where)
        y = torch.from_numpy(encode_labels(labels, self.labels, where, str(self.path)))
        return self.index_losses(torch.from_numpy(X), y, ids, where).numpy()

    @torch.no_grad()
    def index_losses(self, X: torch.Tensor, y: torch.Tensor, ids: list[str] | None = None, where: str = "input") -> torch.Tensor:
        """Per-example CE (float64, (N,), on CPU) for embeddings X (N, d) and class indices y (N,)
        in the order of ``self.labels``. A cross-fit model needs the ids to pick the other half."""
        X, y = X.detach().cpu().float(), y.detach().cpu().long()
        out = torch.empty(len(y), dtype=torch.float64)
        if self.kind == "cross-fit":
            if ids is None:
                raise InputError(f"{self.path}: a cross-fit IL model needs the example ids to pick the half that did not see each one")
            # Called once a batch in online selection: the sorted assignment is kept between calls.
            halves = self.assignment.halves(ids, where, keep_index=True)
            groups = [(torch.from_numpy(np.flatnonzero(halves == h)), self.heads[1 - h]) for h in (0, 1)]
        else:
            groups = [(torch.arange(len(y)), self.heads[0])]
        for idx, model in groups:
            for s in range(0, len(idx), 65536):
                part = idx[s:s + 65536]
                out[part] = per_example_ce(model(X[part]).double(), y[part])
        return out

    @torch.no_grad()
    def pool_losses(self, rows, y: np.ndarray, classes: list[Any], ids, where: str, out: DiskColumn | None = None):
        """Per-example CE (float64, (n,)) over a pool read from disk, as :meth:`losses` gives it.

        ``rows``: ``curate.io.matrix.Embeddings`` (n, d); ``y``: (n,) indices into ``classes``
        (the pool's class order), any integer type; ``ids``: (n,) sliceable (an Arrow array, a
        list or a lazy ``ParquetColumn``), read in blocks (cross-fit only). The rows go through
        each model in the same blocks of 65536 as :meth:`index_losses`, so the bytes are the same.

        ``out``: an empty :class:`~curate.io.columns.DiskColumn` to append the losses to, in row
        order; it is returned. Memory then: one block (+ n bytes for a cross-fit model's half
        of each row). Without ``out``: the losses as an (n,) array (n x 8 bytes).
        """
        self.check_dimension(rows.d, where)
        # Every class the pool has, in the IL model's logit order (an unseen one is refused here).
        to_il = encode_labels(classes, self.labels, where, str(self.path))
        n = len(y)
        sink = out if out is not None else DiskColumn(np.float64)

        def ce(model, X: np.ndarray, part) -> np.ndarray:
            y_il = torch.from_numpy(to_il[y[part]])
            return per_example_ce(model(torch.from_numpy(X)).double(), y_il).numpy()

        if self.kind != "cross-fit":
            for s in range(0, n, _IL_BLOCK):
                part = slice(s, min(s + _IL_BLOCK, n))
                sink.append(ce(self.heads[0], rows.rows(part.start, part.stop).read(), part))
        else:
            if ids is None:
                raise InputError(f"{self.path}: a cross-fit IL model needs the example ids to pick the half that did not see each one")
            halves = self.assignment.halves(ids, where)
            # Each half's rows in row order, in blocks of 65536 of that half (as index_losses takes
            # them), their losses appended to that half's file; then merged back into row order.
            parts = []
            try:
                for h in (0, 1):
                    part_out = DiskColumn(np.float64)
                    parts.append(part_out)
                    for idx in _group_blocks(halves, h, _IL_BLOCK):
                        part_out.append(ce(self.heads[1 - h], rows.take(idx), idx))
                taken = [0, 0]
                for s in range(0, n, _IL_BLOCK):
                    m = halves[s:s + _IL_BLOCK]
                    v = np.empty(len(m))
                    for h in (0, 1):
                        sel = m == h
                        k = int(sel.sum())
                        v[sel] = parts[h].read(taken[h], taken[h] + k)
                        taken[h] += k
                    sink.append(v)
            finally:
                for p in parts:
                    p.close()
        if out is not None:
            return out
        try:
            return sink.to_numpy()
        finally:
            sink.close()

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "sha256": self.sha256,
                "architecture": self.config.get("architecture"), "chosen_epoch": self.config.get("chosen_epoch"),
                "val_loss": self.config.get("val_loss")}


_IL_BLOCK = 65536  # rows per model call in pool_losses, as in index_losses (same blocks, same bytes)


def _group_blocks(halves: np.ndarray, h: int, size: int):
    """``np.flatnonzero(halves == h)`` in consecutive blocks of ``size``, without the n-length array."""
    buf: list[np.ndarray] = []
    count = 0
    for s in range(0, len(halves), size):
        idx = np.flatnonzero(halves[s:s + size] == h) + s
        buf.append(idx)
        count += len(idx)
        if count >= size:
            cat = np.concatenate(buf)
            yield cat[:size]
            buf, count = [cat[size:]], len(cat) - size
    if count:
        yield np.concatenate(buf)


def _check_model_file(path: Path) -> None:
    kind = store.file_kind(path)
    if kind == "parquet":
        raise InputError(f"{path}: this is a Parquet file; --il takes a `curate il train` directory "
                         f"(train one with `curate il train HOLDOUT.parquet -o IL_DIR`)")
    if kind != "torchscript":
        raise InputError(f"{path}: not an IL model; --il takes a `curate il train` directory (or a TorchScript file)")


def _torchscript_labels(path: Path) -> list[Any]:
    candidates = [path.with_name(path.name + ".labels.json"), path.parent / "labels.json"]
    lab = next((c for c in candidates if c.is_file()), None)
    if lab is None:
        raise InputError(f"{path}: a TorchScript IL model needs its label mapping as a JSON list in {candidates[1]}")
    try:
        labels = json.loads(lab.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{lab}: not valid JSON ({e})") from None
    if not isinstance(labels, list) or not labels:
        raise InputError(f"{lab}: expected a non-empty JSON list of labels in logit order")
    return labels


def info(path: str | Path, trust_torchscript: bool = False) -> dict[str, Any]:
    """What an IL model holds. A TorchScript file is not loaded (loading runs its code) unless trusted:
    then only its path, size, sha256 and labels.json are reported."""
    path = Path(path)
    if path.is_file() and not trust_torchscript:
        _check_model_file(path)
        return {"path": str(path), "kind": "torchscript", "size": path.stat().st_size, "sha256": file_sha256(path),
                "labels": _torchscript_labels(path), "dimension": None,
                "loaded": False, "note": f"not loaded: loading would execute code inside the file ({store.TRUST_FLAG} to load it)"}
    model = ILModel(path, trust_torchscript=trust_torchscript)
    cfg = dict(model.config)
    cfg.pop("curve", None)
    return {"path": str(model.path), "kind": model.kind, "sha256": model.sha256, "labels": model.labels,
            "dimension": model.dimension, **{k: v for k, v in cfg.items() if k not in ("labels",)}}
