"""The shape every score method has: columns it writes, what it needs, a check and a compute.

A method is one module under ``curate/scores/`` holding a ``ScoreMethod`` subclass, plus one
line in ``curate/scores/registry.py``. ``curate.score.score`` builds one ``ScoreContext`` per
run; the context loads what methods share (labels, snapshot heads, IL model, target set) lazily
and at most once, so a method asks for ``ctx.snapshot`` or ``ctx.target`` and never reloads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import InputError
from curate.io.fs import as_path

if TYPE_CHECKING:
    from curate.io.matrix import Embeddings
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


def finite(name: str, values: np.ndarray, ids, offset: int = 0) -> np.ndarray:
    """``values`` if every entry is finite, else an InputError naming the first bad row's id.

    ``values``: (b, ...) rows; ``ids``: their b ids (a list or an Arrow array); ``offset``: the
    pool row of ``values[0]``, for the message.
    """
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(ids), -1).any(1))[0])
        id_ = ids[i].as_py() if isinstance(ids[i], pa.Scalar) else ids[i]
        raise InputError(f"{name}: non-finite value at row {offset + i} (id {id_!r}); check the embeddings and "
                         "lower --lr or --epochs if training diverged")
    return values


class ScoreContext:
    """Everything one score run shares: pool rows, options, runtime; heavy parts loaded lazily.

    The embeddings are never read eagerly: ``embeddings`` spills them to a private file and
    streams them (training and the per-row pass: memory independent of n); ``X`` reads them
    whole, for the methods that need every row at once (gio, label_quality, dedup). Call
    :meth:`close` when done (deletes the spilled file).

    ``table``: the pool's id and (when present) label columns. ``ids`` / ``X`` may be given
    (a list, an (n, d) float32 array) when the caller already holds them.
    """

    def __init__(self, pool: Path, table: pa.Table, prov: dict[str, Any], cfg: "ScoreConfig", runtime: "Runtime",
                 common: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
                 ids: list[str] | None = None, X: np.ndarray | None = None):
        self.pool, self.table, self.prov, self.cfg, self.runtime = as_path(pool), table, prov, cfg, runtime
        self.common = common if common is not None else {}  # recorded in every method's provenance
        self.details = details if details is not None else {}  # method name -> what its compute hands its provenance
        self.id_array = pa.chunked_array([pa.array(ids)]) if ids is not None else table.column("id")
        if ids is not None:
            self.__dict__["ids"] = ids
        if X is not None:
            self.__dict__["X"] = X

    @property
    def n(self) -> int:
        return len(self.id_array)

    @cached_property
    def ids(self) -> list[str]:
        """The ids as a Python list (n objects): for methods that hold all rows anyway."""
        return self.id_array.to_pylist()

    @cached_property
    def embeddings(self) -> "Embeddings":
        """The pool's (n, d) float32 embeddings on disk, read by row range or index (validated)."""
        from curate.io.matrix import Embeddings

        return Embeddings.from_parquet(self.pool, batch_rows=min(65536, max(1024, self.runtime.chunk)))

    @cached_property
    def X(self) -> np.ndarray:
        """(n, d) float32 embeddings in pool order, all in memory (n x d x 4 bytes)."""
        if "embeddings" in self.__dict__:
            return self.embeddings.read_all()
        from curate.io.parquet import read_embeddings

        return read_embeddings(self.pool)

    @property
    def dim(self) -> int:
        """The embedding dimension d (from whichever of ``X`` / ``embeddings`` is loaded)."""
        return self.X.shape[1] if "X" in self.__dict__ else self.embeddings.d

    def close(self) -> None:
        if "embeddings" in self.__dict__:
            self.embeddings.close()

    @cached_property
    def label_column(self) -> pa.ChunkedArray:
        """The label column, checked for nulls and NaN (InputError naming the row's id)."""
        from curate.io.labels import require_labels
        from curate.scores.registry import methods_needing

        who = methods_needing(LABELS, self.cfg.methods)
        if "label" not in self.table.column_names:
            require_labels(self.table, self.pool, who)  # raises: no label column
        col = self.table.column("label")
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        missing = col.null_count > 0
        if pa.types.is_floating(col.type):
            missing = missing or pc.any(pc.is_nan(col)).as_py()
        if missing:
            require_labels(self.table, self.pool, who)  # raises, naming the first bad row
        return col

    @cached_property
    def labels(self) -> list[Any]:
        """The labels as Python values (n objects); prefer ``y`` and ``classes``."""
        return self.label_column.to_pylist()

    @cached_property
    def classes(self) -> list[Any]:
        from curate.io.labels import class_order

        # class_order sorts the distinct values: the distinct values suffice (no n-length list).
        return class_order(pc.unique(self.label_column).to_pylist())

    @cached_property
    def y(self) -> np.ndarray:
        """Class indices (n,) int64 in ``classes`` order; every class needs at least 2 rows."""
        col = self.label_column
        y = pc.index_in(col, value_set=pa.array(self.classes, type=col.type)).to_numpy(zero_copy_only=False).astype(np.int64)
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
        """The K snapshot heads' per-row scores reduced over K, each (n,) float64: ``el2n``,
        ``ce``, ``grand`` (means) and with ``--std`` ``el2n_std``, ``ce_std``, ``grand_std``."""
        from curate.scores.snapshot import snapshot_scores

        return snapshot_scores(self.embeddings, self.y, len(self.classes), self.cfg, self.runtime, self.id_array)

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
        if T.shape[1] != self.dim:
            raise InputError(f"{self.cfg.target}: target embeddings have {T.shape[1]} dimensions, the pool {self.dim}; "
                             "embed both with the same model")
        return T


def snapshot_params(ctx: ScoreContext) -> dict[str, Any]:
    """The snapshot heads' record, shared by every method that reads ``ctx.snapshot``."""
    cfg = ctx.cfg
    return {"K": cfg.seeds, "t": cfg.epochs,
            "architecture": cfg.spec.to_dict() | {"in_dim": ctx.dim, "n_classes": len(ctx.classes)},
            "optimizer": cfg.train.to_dict() | {"epochs": cfg.epochs}, "seeds": [cfg.seed * 1000 + k for k in range(cfg.seeds)],
            "mode": "eval", "reduction": "per-example", **ctx.common}
