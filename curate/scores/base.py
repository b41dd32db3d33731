"""The shape every score method has: columns it writes, what it needs, a check and a compute.

A method is one module under ``curate/scores/`` holding a ``ScoreMethod`` subclass, plus one
line in ``curate/scores/registry.py``. ``curate.score.score`` builds one ``ScoreContext`` per
run; the context loads what methods share (labels, snapshot heads, IL model, target set) lazily
and at most once, so a method asks for ``ctx.snapshot`` or ``ctx.target`` and never reloads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from curate.errors import InputError

if TYPE_CHECKING:
    from curate.runtime import Runtime
    from curate.score import ScoreConfig

# What a method may need; the context provides each lazily.
LABELS, SNAPSHOT, IL_MODEL, TARGET = "labels", "snapshot", "il_model", "target"


@dataclass(frozen=True)
class Column:
    """One output column: its Arrow type and a one-line meaning (range and direction)."""

    name: str
    type: pa.DataType
    meaning: str
    std_of: str | None = None  # written only with --std: the per-seed spread of this column


class ScoreMethod(ABC):
    """Base of a score method. Subclasses set the class attributes and ``compute``.

    ``columns``: every column the method may write (its std columns included); re-running the
    method replaces all of them. ``needs``: a subset of {labels, snapshot, il_model, target}.
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help
    columns: ClassVar[tuple[Column, ...]]
    needs: ClassVar[frozenset[str]] = frozenset()

    def check(self, cfg: "ScoreConfig") -> None:
        """Refuse options this method cannot run with (InputError), before any file is read."""

    @abstractmethod
    def compute(self, ctx: "ScoreContext") -> dict[str, pa.Array]:
        """Column name -> array of ``ctx.n`` rows, in pool order."""

    def provenance(self, ctx: "ScoreContext") -> dict[str, Any]:
        """The footer record of this method's columns (``scores[column]``)."""
        return {"method": self.name, **ctx.common}

    def summarise(self, cols: dict[str, pa.Array]) -> dict[str, Any]:
        """Numbers for the CLI summary (JSON-able); default: mean/min/max of the main column."""
        main = self.columns[0].name
        if main not in cols or not pa.types.is_floating(cols[main].type):
            return {}
        v = np.asarray(cols[main])
        return {main: {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}}


def finite(name: str, values: np.ndarray, ids: list[str]) -> np.ndarray:
    """``values`` if every entry is finite, else an InputError naming the first bad row's id."""
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(ids), -1).any(1))[0])
        raise InputError(f"{name}: non-finite value at row {i} (id {ids[i]!r}); check the embeddings and "
                         "lower --lr or --epochs if training diverged")
    return values


@dataclass
class ScoreContext:
    """Everything one score run shares: pool rows, options, runtime; heavy parts loaded lazily."""

    pool: Path
    ids: list[str]
    X: np.ndarray  # (n, d) float32 embeddings in pool order
    table: pa.Table  # id and (when present) label columns
    prov: dict[str, Any]
    cfg: "ScoreConfig"
    runtime: "Runtime"
    common: dict[str, Any] = field(default_factory=dict)  # recorded in every method's provenance
    details: dict[str, Any] = field(default_factory=dict)  # method name -> what its compute hands its provenance

    @property
    def n(self) -> int:
        return len(self.ids)

    @cached_property
    def labels(self) -> list[Any]:
        from curate.io.labels import require_labels

        from curate.scores.registry import methods_needing

        # require_labels refuses null and NaN labels, naming the row's id.
        return require_labels(self.table, self.pool, methods_needing(LABELS, self.cfg.methods))

    @cached_property
    def classes(self) -> list[Any]:
        from curate.io.labels import class_order

        return class_order(self.labels)

    @cached_property
    def y(self) -> np.ndarray:
        """Class indices (n,) int64 in ``classes`` order; every class needs at least 2 rows."""
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.array([index[v] for v in self.labels], dtype=np.int64)
        from curate.scores.registry import methods_needing

        who = methods_needing(LABELS, self.cfg.methods)
        who += " need" if " and " in who else " needs"
        if len(self.classes) < 2:
            raise InputError(f"{self.pool}: every row has label {self.classes[0]!r}; {who} at least 2 classes")
        counts = np.bincount(y, minlength=len(self.classes))
        if counts.min() < 2:
            c = self.classes[int(np.argmin(counts))]
            raise InputError(f"{self.pool}: class {c!r} has {int(counts.min())} row; {who} at least 2 rows per class")
        return y

    @cached_property
    def snapshot(self) -> dict[str, np.ndarray]:
        """Per-seed scores of the K snapshot heads: ``el2n``, ``ce``, ``grand`` (K, n) float64."""
        from curate.scores.snapshot import snapshot_scores

        return snapshot_scores(self.X, self.y, len(self.classes), self.cfg, self.runtime, self.ids)

    @cached_property
    def il_model(self):
        from curate.il import ILModel

        kw = {"trust_torchscript": True} if self.cfg.trust_torchscript else {}
        model = ILModel(self.cfg.il, **kw)
        # A TorchScript IL model carries no config, hence no embedding record to compare.
        emb = (getattr(model, "config", None) or {}).get("embedding_model")
        if emb and self.prov.get("embedding_model"):
            from curate.io.compat import check_same_embedding

            check_same_embedding(emb, self.prov["embedding_model"], f"IL model {self.cfg.il}", str(self.pool),
                                 "re-run `curate il train` on a holdout embedded like the pool")
        return model

    @cached_property
    def target(self) -> np.ndarray:
        from curate.io.parquet import read_embeddings, read_provenance

        T = read_embeddings(self.cfg.target)
        if len(T) == 0:
            raise InputError(f"{self.cfg.target}: the target set is empty")
        tprov = read_provenance(self.cfg.target)
        if tprov.get("embedding_model") and self.prov.get("embedding_model"):
            from curate.io.compat import check_same_embedding

            check_same_embedding(tprov["embedding_model"], self.prov["embedding_model"], str(self.cfg.target),
                                 str(self.pool), "re-run `curate embed` on one of them with the other's model options")
        if T.shape[1] != self.X.shape[1]:
            raise InputError(f"{self.cfg.target}: target embeddings have {T.shape[1]} dimensions, the pool {self.X.shape[1]}; "
                             "embed both with the same model")
        return T


def snapshot_params(ctx: ScoreContext) -> dict[str, Any]:
    """The snapshot heads' record, shared by every method that reads ``ctx.snapshot``."""
    cfg = ctx.cfg
    return {"K": cfg.seeds, "t": cfg.epochs,
            "architecture": cfg.spec.to_dict() | {"in_dim": ctx.X.shape[1], "n_classes": len(ctx.classes)},
            "optimizer": cfg.train.to_dict() | {"epochs": cfg.epochs}, "seeds": [cfg.seed * 1000 + k for k in range(cfg.seeds)],
            "mode": "eval", "reduction": "per-example", **ctx.common}
