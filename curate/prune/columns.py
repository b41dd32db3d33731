"""The scored file's columns as prune needs them: one column at a time, batch by batch.

Prune's memory must not grow with the rows by more than a few bytes each (issue #15): it holds a
keep mask and a reason code (1 byte each per row), the label as a small integer code, and, while
a quantile is taken, the valid values of one column (8 bytes each). Ids, labels as Python
objects and embeddings are never held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import InputError
from curate.io.parquet import open_stream

BATCH_ROWS = 65536


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)


class ScoredColumns:
    """A scored Parquet file read column by column; ``n`` rows, ``schema`` its non-list columns (polars)."""

    def __init__(self, path: str | Path, batch_rows: int | None = None):
        self.path = path
        self.batch_rows = batch_rows or BATCH_ROWS
        pf = open_stream(path)
        arrow = pf.schema_arrow
        if "id" not in arrow.names:
            raise InputError(f"{path}: no 'id' column; prune reads files written by `curate score`")
        self.n = pf.metadata.num_rows
        self.schema = pl.from_arrow(pa.schema([f for f in arrow if not _is_list(f.type)]).empty_table()).schema

    def batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """``columns`` in batches of at most ``batch_rows`` rows, in file order."""
        pf = open_stream(self.path)  # a fresh reader per pass: one decoded batch in memory at a time
        try:
            yield from pf.iter_batches(batch_size=self.batch_rows, columns=columns, use_threads=False)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"{self.path}: could not read ({type(e).__name__}: {e})") from None

    def floats(self, column: str) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(first row, x, null)`` per batch: ``x`` float64 with nulls as NaN, ``null`` bool.

        Arrow's unchecked cast rounds integers to the nearest double as polars' cast does; Arrow
        rather than polars because polars' allocator keeps freed batches for seconds (its RSS
        then grows with the batches read, not with what is held)."""
        start = 0
        for batch in self.batches([column]):
            arr = batch.column(0)
            null = arr.is_null().to_numpy(zero_copy_only=False)
            x = pc.cast(arr, pa.float64(), safe=False).fill_null(np.nan).to_numpy(zero_copy_only=False)
            yield start, x, null
            start += len(arr)

    def labels(self) -> "LabelCodes":
        """The ``label`` column as codes (see :class:`LabelCodes`); memory: the codes and one batch."""
        codes = np.empty(self.n, dtype=np.int32)
        index: dict[tuple[bool, str], int] = {}
        values: list[Any] = []
        start = 0
        dtype = None
        for batch in self.batches(["label"]):
            arr = batch.column(0)
            if pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            dtype = arr.type
            distinct = pc.unique(arr)
            local = np.empty(len(distinct), dtype=np.int32)
            for j, v in enumerate(distinct.to_pylist()):
                key = (v is None, str(v))  # the label "None" and a null label are two classes
                if key not in index:
                    index[key] = len(values)
                    values.append(v)
                local[j] = index[key]
            pos = pc.index_in(arr, value_set=distinct, skip_nulls=False).to_numpy(zero_copy_only=False)
            codes[start:start + len(arr)] = local[pos]
            start += len(arr)
        small = np.uint8 if len(values) <= 2**8 else np.uint16 if len(values) <= 2**16 else np.int32
        return LabelCodes(codes.astype(small), values, dtype)


@dataclass(frozen=True)
class LabelCodes:
    """``codes``: (n,) unsigned ints, row i's label is ``values[codes[i]]``; ``values``: the distinct
    labels (Python values, None for null) in order of first appearance, as polars' ordered group_by
    lists them; ``dtype``: the column's Arrow type."""

    codes: np.ndarray
    values: list[Any]
    dtype: pa.DataType | None

    @property
    def k(self) -> int:
        return len(self.values)

    def sorted_order(self) -> list[int]:
        """Codes in the order polars sorts the labels (nulls first), as ``df.sort('label')`` would."""
        if not self.values:
            return []
        return pl.from_arrow(pa.array(self.values, type=self.dtype)).arg_sort().to_list()

    def counts(self, mask: np.ndarray | None = None) -> np.ndarray:
        """(k,) int64 rows per label (only the rows where ``mask`` is true, if given)."""
        return np.bincount(self.codes if mask is None else self.codes[mask], minlength=self.k)


def quantile_linear(vals: np.ndarray, q: float) -> float | None:
    """The ``q`` quantile of ``vals`` (no NaN) with polars' "linear" interpolation, bit for bit.

    Polars selects the order statistic at ``int((n - 1) q)`` and interpolates towards the next
    one as ``f * (upper - lower) + lower``; here the same, with an in-place partition (``vals``
    is reordered) instead of a sorted copy. None for no values.
    """
    n = len(vals)
    if n == 0:
        return None
    if n == 1:
        return float(vals[0])
    fi = (n - 1) * q
    idx = min(max(int(fi), 0), n - 1)
    vals.partition(idx)
    lower = float(vals[idx])
    if idx == math.ceil(fi):
        return lower
    upper = float(vals[idx + 1:].min())
    if lower == upper:
        return lower
    return (fi - idx) * (upper - lower) + lower


def grouped_valid(cols: ScoredColumns, column: str, groups: np.ndarray | None, k: int,
                  eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The valid (not null, not NaN) values of ``column`` in one float64 buffer, grouped.

    ``groups``: (n,) codes < k, or None for one group; ``eligible``: (n,) bool, rows to consider.
    Returns ``(buffer, offsets (k + 1,), nulls, NaNs)``: group g's values are
    ``buffer[offsets[g]:offsets[g + 1]]`` (in no particular order). Two passes over the column:
    counting, then placing; memory: the buffer and one batch.
    """
    k = 1 if groups is None else k
    sizes = np.zeros(k, dtype=np.int64)
    nulls = nans = 0

    def valid(start: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This batch's considered values and their groups."""
        keep = ~np.isnan(x)  # nulls are NaN here too
        if eligible is not None:
            keep &= eligible[start:start + len(x)]
        g = np.zeros(len(x), np.int64) if groups is None else groups[start:start + len(x)].astype(np.int64)
        return x[keep], g[keep]

    for start, x, null in cols.floats(column):
        nulls += int(null.sum())
        nans += int((np.isnan(x) & ~null).sum())
        sizes += np.bincount(valid(start, x)[1], minlength=k)
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buf = np.empty(int(offsets[-1]), dtype=np.float64)
    fill = offsets[:-1].copy()
    for start, x, _ in cols.floats(column):
        v, g = valid(start, x)
        order = np.argsort(g, kind="stable")
        g = g[order]
        here = np.bincount(g, minlength=k)
        first = np.zeros(k, dtype=np.int64)
        np.cumsum(here[:-1], out=first[1:])
        buf[fill[g] + np.arange(len(g)) - first[g]] = v[order]
        fill += here
    return buf, offsets, nulls, nans
