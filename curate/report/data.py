"""The report's inputs, read from the scored Parquet batch by batch: never a whole table.

What a report holds at once, per row: the label as a class code (1 byte below 256 classes), and
while one score column is drawn, that column's finite values (float64) with their class codes and
one transient copy (a partition): about 18 bytes a row. The embeddings are
read only for the map's fixed-size sample, ids and texts only for the rows shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import InputError
from curate.io.parquet import embedding_array, open_parquet, open_stream

# Columns that are never scores even if they are numeric.
NOT_SCORES = {"id", "label", "embedding", "gio_selected", "dup_of", "dup_group", "dup_keep", "contam_of"}
BATCH_ROWS = 16384


def _known_scores() -> tuple[str, ...]:
    """Every numeric column a registered score method writes, in registry order."""
    from curate.scores.registry import known_columns

    return tuple(name for name, col in known_columns().items()
                 if (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)) and name not in NOT_SCORES)


# The score columns the report knows by name, in display order: from the score-method registry.
KNOWN_SCORES = _known_scores()


def score_columns(schema: dict[str, pl.DataType]) -> list[str]:
    """Known score columns present (in KNOWN_SCORES order), then any other float column."""
    known = [c for c in KNOWN_SCORES if c in schema]
    extra = [c for c, t in schema.items() if t.is_float() and c not in known and c not in NOT_SCORES]
    return known + extra


@dataclass(frozen=True)
class Scored:
    """A scored file opened for the report: ``rows`` rows, its score ``columns`` in display order,
    the name of a kept text column (or None) and every column's name."""

    path: Path
    rows: int
    columns: list[str]
    text: str | None
    names: list[str]

    def batches(self, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The file's ``columns``, batch by batch in row order; a read error is an InputError."""
        try:
            yield from open_stream(self.path).iter_batches(batch_size=batch_rows, columns=columns, use_threads=False)
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"{self.path}: could not read ({type(e).__name__}: {e})") from None


def open_scores(path: str | Path) -> Scored:
    """Check that ``path`` is a scored file with rows and at least one score column."""
    path = Path(path)
    pf = open_parquet(path)
    schema = pf.schema_arrow
    if "id" not in schema.names:
        raise InputError(f"{path}: no 'id' column; report reads files written by `curate score`")
    empty = pl.from_arrow(schema.empty_table())
    scores = score_columns(empty.schema)
    if not scores:
        raise InputError(f"{path}: no score columns (e.g. el2n, rho); run `curate score` first")
    if pf.metadata.num_rows == 0:
        raise InputError(f"{path}: has no rows; nothing to report")
    text = next((c for c, t in empty.schema.items() if t == pl.String and c not in ("id", "label", "dup_of")), None)
    return Scored(path, pf.metadata.num_rows, scores, text, list(schema.names))


def floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric Arrow column as float64, nulls as NaN (inf kept)."""
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class Labels:
    """Row i's label is ``names[codes[i]]``; ``names``: the distinct labels as text, sorted, a
    missing label (None) last; ``codes``: (n,) the smallest unsigned dtype that holds them."""

    codes: np.ndarray
    names: list[str | None]

    def counts(self) -> np.ndarray:
        """(len(names),) int64 rows per class."""
        return np.bincount(self.codes, minlength=len(self.names))


def read_labels(scored: Scored) -> Labels:
    """The ``label`` column as :class:`Labels` (text as polars casts it; nulls kept as None).

    Not :func:`curate.io.label_codes.read_label_codes`: that refuses null labels, which the
    report shows as a class "(none)". Memory: n int32 codes while reading, then 1-4 bytes a row.
    """
    if "label" not in scored.names:
        return Labels(np.zeros(scored.rows, np.uint8), [None])
    codes = np.empty(scored.rows, np.int32)
    index: dict[str, int] = {}
    start = 0
    for batch in scored.batches(["label"]):
        s = pl.Series(batch.column(0)).cast(pl.String)
        keys = s.drop_nulls().unique(maintain_order=True).to_list()
        for k in keys:
            index.setdefault(k, len(index))
        part = s.replace_strict(keys, [index[k] for k in keys], default=-1, return_dtype=pl.Int32)
        codes[start:start + len(s)] = part.to_numpy()
        start += len(s)
    names: list[str | None] = sorted(index)
    has_null = bool((codes < 0).any())
    lut = np.empty(len(index) + 1, np.int64)
    lut[[index[k] for k in names]] = np.arange(len(names))
    lut[-1] = len(names)  # code -1 (null) reads the last entry
    dtype = np.uint8 if len(names) < 255 else np.uint16 if len(names) < 65535 else np.uint32
    if has_null:
        names.append(None)
    return Labels(lut.astype(dtype)[codes], names)


def ids_at(scored: Scored, rows: np.ndarray) -> dict[int, str]:
    """Row index -> id (as text) for ``rows``, read in one pass over the id column."""
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    out: dict[int, str] = {}
    start = 0
    for batch in scored.batches(["id"]):
        stop = start + batch.num_rows
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            taken = pl.Series(batch.column(0).take(rows[lo:hi] - start)).cast(pl.String).to_list()
            out.update(zip(rows[lo:hi].tolist(), taken))
        start = stop
    return out


def values_at(scored: Scored, column: str, rows: np.ndarray) -> np.ndarray:
    """``column`` at ``rows`` (sorted indices) as float64, nulls NaN, in one pass."""
    out = np.empty(len(rows))
    start = 0
    for batch in scored.batches([column]):
        stop = start + batch.num_rows
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            out[lo:hi] = floats(batch.column(0).take(rows[lo:hi] - start))
        start = stop
    return out


def sample_rows(n: int, size: int, seed: int, must: list[int]) -> np.ndarray:
    """Sorted row indices: a seeded uniform sample of ``size`` rows plus the ``must`` rows."""
    rng = np.random.default_rng(seed)
    base = rng.choice(n, size=min(size, n), replace=False) if n > size else np.arange(n)
    return np.unique(np.concatenate([base, np.asarray(must, dtype=np.int64)])).astype(np.int64)


def sample_embeddings(path: str | Path, rows: np.ndarray, batch_rows: int = 8192) -> np.ndarray | None:
    """The embeddings of ``rows`` (sorted indices), read batch by batch; None if there is no column.

    Memory: one batch of ``batch_rows`` embeddings plus the sample, whatever the file's size.
    """
    pf = open_stream(path)
    if "embedding" not in pf.schema_arrow.names:
        return None
    parts, start = [], 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["embedding"], use_threads=False):
        stop = start + batch.num_rows
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            taken = batch.column(0).take(rows[lo:hi] - start)
            parts.append(embedding_array(taken, f"{path}: embedding"))
        start = stop
    return np.concatenate(parts) if parts else None


def pca2(x: np.ndarray) -> np.ndarray:
    """(n, d) -> (n, 2): projection on the two leading principal axes (SVD of the centred data).

    Signs are fixed (largest |loading| positive) so the picture is the same on every run.
    """
    x = x.astype(np.float64) - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    axes = vt[:2]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    proj = x @ (axes * signs[:, None]).T
    return proj if proj.shape[1] == 2 else np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
