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
from curate.io.columns import LazyColumn, as_column
from curate.io.fs import as_path

if TYPE_CHECKING:
    from curate.io.matrix import Embeddings
    from curate.runtime import Runtime
    from curate.score import ScoreConfig

# What a method may need; the context provides each lazily.
LABELS, SNAPSHOT, IL_MODEL, TARGET = "labels", "snapshot", "il_model", "target"

SUMMARY_ROWS = 65536  # rows read at once when a column is summarised or checked


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
    def compute(self, ctx: "ScoreContext") -> dict[str, "pa.Array | LazyColumn"]:
        """Column name -> ``ctx.n`` rows in pool order: a ``pa.Array``, or a
        :class:`~curate.io.columns.LazyColumn` read by row range when the output is written."""

    def provenance(self, ctx: "ScoreContext") -> dict[str, Any]:
        """The footer record of this method's columns (``scores[column]``)."""
        return {"method": self.name, **ctx.common}

    def summarise(self, cols: dict[str, "pa.Array | LazyColumn"]) -> dict[str, Any]:
        """Numbers for the CLI summary (JSON-able); default: mean/min/max of the main column,
        read batch by batch (a lazy column is never loaded whole)."""
        main = self.columns[0].name
        if main not in cols or not pa.types.is_floating(cols[main].type):
            return {}
        col = as_column(cols[main])
        total, lo, hi = 0.0, np.inf, -np.inf
        for _, v in col.batches(SUMMARY_ROWS):
            total += float(v.sum())
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
        return {main: {"mean": total / col.n if col.n else float("nan"), "min": lo, "max": hi}}


def finite(name: str, values: np.ndarray, ids, offset: int = 0) -> np.ndarray:
    """``values`` if every entry is finite, else an InputError naming the first bad row's id.

    ``values``: (b, ...) rows; ``ids``: their b ids (a list, an Arrow array, or a lazy
    :class:`~curate.io.columns.ParquetColumn` view: only the bad row's id is read); ``offset``:
    the pool row of ``values[0]``, for the message.
    """
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(values.shape[0], -1).any(1))[0])
        id_ = ids[i].as_py() if isinstance(ids[i], pa.Scalar) else ids[i]
        raise InputError(f"{name}: non-finite value at row {offset + i} (id {id_!r}); check the embeddings and "
                         "lower --lr or --epochs if training diverged")
    return values


def finite_column(name: str, col: LazyColumn, ids) -> LazyColumn:
    """``col`` if every row is finite (checked batch by batch), else :func:`finite`'s InputError."""
    for s, v in col.batches(SUMMARY_ROWS):
        finite(name, v, ids[s:s + len(v)], s)
    return col


class ScoreContext:
    """Everything one score run shares: pool rows, options, runtime; heavy parts loaded lazily.

    The embeddings are never read eagerly: ``embeddings`` spills them to a private file and
    streams them (training and the per-row pass: memory independent of n); ``X`` reads them
    whole, for the methods that need every row at once (gio, label_quality, dedup). Call
    :meth:`close` when done (deletes the spilled file).

    Rows never held whole unless a method asks: the id column is read by range from the pool
    (``id_view``; ``ids`` / ``id_array`` load it, for methods that hold every row anyway), and
    the labels are read once, batch by batch, into narrow class codes (``codes``: n x 2 bytes
    for fewer than 32768 classes; ``y`` widens them to int64 for the methods that hold all rows).

    ``table``: the pool's id and (when present) label columns, when the caller holds them
    (``None``: read from ``pool``). ``ids`` / ``X`` may be given (a list, an (n, d) float32
    array) when the caller already holds them.
    """

    def __init__(self, pool: Path, table: pa.Table | None, prov: dict[str, Any], cfg: "ScoreConfig", runtime: "Runtime",
                 common: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
                 ids: list[str] | None = None, X: np.ndarray | None = None, n: int | None = None):
        self.pool, self.table, self.prov, self.cfg, self.runtime = as_path(pool), table, prov, cfg, runtime
        self.common = common if common is not None else {}  # recorded in every method's provenance
        self.details = details if details is not None else {}  # method name -> what its compute hands its provenance
        if ids is not None:
            self.__dict__["ids"] = ids
            self.__dict__["id_array"] = pa.chunked_array([pa.array(ids)])
        elif table is not None:
            self.__dict__["id_array"] = table.column("id")
        if X is not None:
            self.__dict__["X"] = X
        if n is not None:
            self._n = n
        elif table is not None or ids is not None:
            self._n = len(self.id_array)
        else:
            self._n = self._stream().metadata.num_rows

    def _stream(self):
        from curate.io.parquet import open_stream

        return open_stream(self.pool)

    @property
    def n(self) -> int:
        return self._n

    @cached_property
    def id_array(self) -> pa.ChunkedArray:
        """The id column in memory (about 25 bytes a row): for methods that hold all rows anyway."""
        from curate.io.parquet import read_table

        return read_table(self.pool, columns=["id"]).column("id")

    @cached_property
    def ids(self) -> list[str]:
        """The ids as a Python list (n objects): for methods that hold all rows anyway."""
        return self.id_array.to_pylist()

    @property
    def id_view(self):
        """The ids, indexable and sliceable without holding them: the loaded column when one is
        held, else a :class:`~curate.io.columns.ParquetColumn` reading the pool by range."""
        if "id_array" in self.__dict__:
            return self.__dict__["id_array"]
        from curate.io.columns import ParquetColumn

        return ParquetColumn(self._stream(), "id")

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

    def close_embeddings(self) -> None:
        """Delete the spilled embedding matrix (n x d x 4 bytes of disk) once no method needs it."""
        if "embeddings" in self.__dict__:
            self.embeddings.close()

    def close(self) -> None:
        """Delete the private files: the spilled embeddings and the snapshot's score columns."""
        self.close_embeddings()
        for v in (self.__dict__.get("snapshot") or {}).values():
            v.close()

    @cached_property
    def _encoded(self) -> tuple[list[Any], np.ndarray]:
        """``(classes, codes)``: the sorted distinct labels and each row's index among them
        ((n,) int16, int32 past 32767 classes), read batch by batch; nulls and NaN refused
        (InputError naming the first bad row's id). From the pool file by ``read_label_codes``,
        as `il train` reads it (Python-equal labels, 0.0 and -0.0, are one class)."""
        from curate.io.label_codes import LabelCodes, read_label_codes
        from curate.scores.registry import methods_needing

        who = methods_needing(LABELS, self.cfg.methods)
        if self.table is not None:
            return self._encoded_held(who)
        labels = read_label_codes(self.pool, who)
        # The class of each distinct label (each occurs once here), then of each row through its
        # label's code: the classes and indices of ``labels.classes()`` without its n x 8-byte array.
        classes, lut = LabelCodes(np.arange(len(labels.values), dtype=np.int32), labels.values).classes()
        return classes, lut.astype(np.int16 if len(classes) < 2**15 else np.int32)[labels.codes]

    def _encoded_held(self, who: str) -> tuple[list[Any], np.ndarray]:
        """:attr:`_encoded` for the label column of the table the caller holds."""
        from curate.io.labels import class_order, require_labels

        if "label" not in self.table.column_names:
            require_labels(pa.table({"id": pa.array([], pa.string())}), self.pool, who)  # raises: no label column
        seen: dict[Any, int] = {}  # label -> first-seen index; few entries (the classes)
        codes = np.empty(self.n, dtype=np.int32)
        start = 0
        for col in self.table.column("label").chunks:
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            missing = col.null_count > 0
            if pa.types.is_floating(col.type):
                missing = missing or pc.any(pc.is_nan(col)).as_py()
            if missing:
                ids = self.id_view[start:start + len(col)]
                ids = ids.arrow() if hasattr(ids, "arrow") else ids
                require_labels(pa.table({"id": ids, "label": col}), self.pool, who)  # raises, naming the bad row
            enc = col.dictionary_encode()
            local = np.array([seen.setdefault(v, len(seen)) for v in enc.dictionary.to_pylist()], dtype=np.int32)
            codes[start:start + len(col)] = local[enc.indices.to_numpy(zero_copy_only=False)]
            start += len(col)
        classes = class_order(list(seen))
        rank = np.empty(len(seen), dtype=np.int32)
        rank[[seen[c] for c in classes]] = np.arange(len(classes), dtype=np.int32)
        return classes, rank[codes].astype(np.int16 if len(classes) < 2**15 else np.int32)

    @cached_property
    def labels(self) -> list[Any]:
        """The labels as Python values (n objects); prefer ``codes`` and ``classes``."""
        classes, codes = self._encoded
        return [classes[i] for i in codes]

    @property
    def classes(self) -> list[Any]:
        """The distinct labels, sorted (by type name, then value): class i is ``classes[i]``."""
        return self._encoded[0]

    @cached_property
    def codes(self) -> np.ndarray:
        """Class indices (n,) in ``classes`` order, int16 (int32 past 32767 classes): widen per
        slice where int64 is needed. Every class needs at least 2 rows (InputError)."""
        classes, codes = self._encoded
        from curate.scores.registry import methods_needing

        who = methods_needing(LABELS, self.cfg.methods)
        who += " need" if " and " in who else " needs"
        if len(classes) < 2:
            raise InputError(f"{self.pool}: every row has label {classes[0]!r}; {who} at least 2 classes")
        counts = np.bincount(codes, minlength=len(classes))
        if counts.min() < 2:
            c = classes[int(np.argmin(counts))]
            raise InputError(f"{self.pool}: class {c!r} has {int(counts.min())} row; {who} at least 2 rows per class")
        return codes

    @cached_property
    def y(self) -> np.ndarray:
        """Class indices (n,) int64 in ``classes`` order (n x 8 bytes; streamed code uses ``codes``)."""
        return self.codes.astype(np.int64)

    @cached_property
    def snapshot(self) -> dict[str, Any]:
        """The K snapshot heads' per-row scores reduced over K (``OverHeads``: (n,) float64 disk
        columns): ``el2n``, ``ce``, ``grand``; their std over K with ``--std``."""
        from curate.scores.snapshot import snapshot_scores

        return snapshot_scores(self.embeddings, self.codes, len(self.classes), self.cfg, self.runtime, self.id_view)

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
