"""The report's numbers, one score column at a time, from the batches of the scored file.

Every number is checked in tests against polars/scipy on data with nulls and NaN:
quantiles use linear interpolation over the finite values (polars's 'linear' formula, to the
bit); per-class ``n`` counts the finite values of that column in the class (so for ``gio_order``
it is the number picked, not the class size); Spearman is computed on the rows where both
columns are finite, exactly (integer sums of ranks). Ties in the examples shown are broken by
row order, so the page is the same on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import polars as pl

from curate.report.data import Labels, Scored, floats

QUANTILES = (0.1, 0.5, 0.9)


def quantiles(values: np.ndarray, qs=QUANTILES, overwrite: bool = False) -> dict[float, float]:
    """Linear-interpolated quantiles of ``values`` ((m,) finite, m >= 1): at p = (m - 1) q,
    x[floor p] + (x[floor p + 1] - x[floor p]) (p - floor p) over the sorted values.

    Partial sorts only; ``overwrite`` partitions ``values`` itself instead of a copy.
    """
    m = len(values)
    pos = [(m - 1) * q for q in qs]
    lows = [int(math.floor(p)) for p in pos]
    part = values if overwrite else values.copy()
    part.partition(sorted(set(lows) | {min(lo + 1, m - 1) for lo in lows}))
    out = {}
    for q, p, lo in zip(qs, pos, lows):
        hi = min(lo + 1, m - 1)
        a, b = part[lo], part[hi]
        # + 0.0: a zero quantile is 0, never -0 (which of the tied zeros a sort puts first is arbitrary).
        out[q] = float(a + (b - a) * (p - lo) if a != b else a) + 0.0
    return out


class Smallest:
    """The ``n`` smallest keys pushed so far with their rows, ordered by key then by row
    (ascending, or descending with ``rows_descending``). Memory: n plus one batch."""

    def __init__(self, n: int, rows_descending: bool = False):
        self.n, self.desc = n, rows_descending
        self.keys, self.rows = np.empty(0), np.empty(0, np.int64)

    def push(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if self.n == 0 or len(keys) == 0:
            return
        keys, rows = np.concatenate([self.keys, keys]), np.concatenate([self.rows, rows])
        if len(keys) > self.n:
            # Every key tied with the n-th is kept, so that the row order decides among them.
            keep = keys <= np.partition(keys, self.n - 1)[self.n - 1]
            keys, rows = keys[keep], rows[keep]
        order = np.lexsort((-rows if self.desc else rows, keys))[:self.n]
        self.keys, self.rows = keys[order], rows[order]


@dataclass(frozen=True)
class Column:
    """One score column: its finite ``values`` (m,) float64 in row order with their class
    ``codes`` (m,), the number of null/NaN/inf rows ``missing``, and the rows shown (length <= n):
    ``lowest`` (ascending, earlier row first), ``highest`` (descending, later row first, i.e. the
    end of an ascending sort, reversed) and ``top`` (descending, earlier row first), each as
    (rows, values)."""

    values: np.ndarray
    codes: np.ndarray
    missing: int
    lowest: tuple[np.ndarray, np.ndarray]
    highest: tuple[np.ndarray, np.ndarray]
    top: tuple[np.ndarray, np.ndarray]


def read_column(scored: Scored, name: str, labels: Labels, n: int) -> Column:
    """Stream column ``name``; memory: its finite values (8 bytes a row) and their codes."""
    vals = np.empty(scored.rows)
    codes = np.empty(scored.rows, labels.codes.dtype)
    low, high, top = Smallest(n), Smallest(n, rows_descending=True), Smallest(n)
    m = start = 0
    for batch in scored.batches([name]):
        x = floats(batch.column(0))
        ok = np.isfinite(x)
        v = x[ok]
        rows = np.flatnonzero(ok) + start
        vals[m:m + len(v)] = v
        codes[m:m + len(v)] = labels.codes[start:start + len(x)][ok]
        low.push(v, rows)
        high.push(-v, rows)
        top.push(-v, rows)
        m += len(v)
        start += len(x)
    return Column(vals[:m], codes[:m], scored.rows - m, (low.rows, low.keys), (high.rows, -high.keys),
                  (top.rows, -top.keys))


def per_class(col: Column, labels: Labels) -> list[list]:
    """One row per label, in ``labels.names`` order: [label, n, mean, median, min, max] of the
    finite values in the class; a class with none has n = 0 and None for the rest."""
    counts = np.bincount(col.codes, minlength=len(labels.names))
    out = []
    for c, name in enumerate(labels.names):
        if counts[c] == 0:
            out.append([name, 0, None, None, None, None])
            continue
        sub = col.values[col.codes == c]
        row = [name, int(counts[c]), float(np.mean(sub)), None, float(sub.min()), float(sub.max())]
        row[3] = quantiles(sub, (0.5,), overwrite=True)[0.5]
        out.append(row)
    return out


def _read_where(scored: Scored, name: str, mask: np.ndarray) -> Iterator[np.ndarray]:
    """Column ``name`` as float64 at the rows where ``mask`` holds, batch by batch in row order."""
    start = 0
    for batch in scored.batches([name]):
        yield floats(batch.column(0))[mask[start:start + batch.num_rows]]
        start += batch.num_rows


def _centred_ranks(scored: Scored, name: str, mask: np.ndarray, m: int) -> np.ndarray:
    """(m,) int32: 2 rank - (m + 1) of column ``name`` over the ``mask`` rows, rank = the value's
    average 1-based rank among them (ties share the mean of their positions), in [-m, m].

    Memory: the m values sorted (8 bytes a row) and the result (4): the values are read twice,
    once to sort them and once, batch by batch, to look each one up.
    """
    s = np.empty(m)
    at = 0
    for v in _read_where(scored, name, mask):
        s[at:at + len(v)] = v
        at += len(v)
    s.sort()
    ties = bool((s[1:] == s[:-1]).any())
    out = np.empty(m, np.int32)
    at = 0
    for v in _read_where(scored, name, mask):
        lo = np.searchsorted(s, v, "left")
        # Without ties a value's block of equal values is itself: hi = lo + 1 (one search, not two).
        out[at:at + len(v)] = lo + (np.searchsorted(s, v, "right") if ties else lo + 1) - m
        at += len(v)
    return out


def spearman_pair(scored: Scored, a: str, b: str) -> float:
    """Spearman's rho of columns ``a`` and ``b`` over the rows where both are finite; NaN when
    fewer than 3 such rows or either is constant there.

    Pearson's r of the average ranks, summed exactly as integers. Memory at the peak: a mask
    (1 byte a row), one column's ranks (4), the other column sorted (8) and its ranks (4).
    """
    both = np.empty(scored.rows, bool)
    start = 0
    for batch in scored.batches([a, b]):
        stop = start + batch.num_rows
        both[start:stop] = np.isfinite(floats(batch.column(0))) & np.isfinite(floats(batch.column(1)))
        start = stop
    m = int(both.sum())
    if m < 3:
        return float("nan")
    ra = _centred_ranks(scored, a, both, m)
    rb = _centred_ranks(scored, b, both, m)
    # |rank term| <= m, so a block of (2^62 / m^2) products cannot overflow int64.
    block = max(1, min(65536, (1 << 62) // (m * m)))
    sab = saa = sbb = 0
    for i in range(0, m, block):
        x, y = ra[i:i + block].astype(np.int64), rb[i:i + block].astype(np.int64)
        sab, saa, sbb = sab + int(x @ y), saa + int(x @ x), sbb + int(y @ y)
    return sab / math.sqrt(saa * sbb) if saa and sbb else float("nan")


def spearman(scored: Scored, cols: list[str]) -> np.ndarray:
    """k x k Spearman rank correlations, each pair on the rows where both values are finite."""
    k = len(cols)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = spearman_pair(scored, cols[i], cols[j])
    return out


def gio_picks(scored: Scored, labels: Labels) -> list[list]:
    """Per label: [label, picked (gio_selected true), class size, share picked]."""
    picked = np.zeros(len(labels.names), np.int64)
    start = 0
    for batch in scored.batches(["gio_selected"]):
        sel = batch.column(0).fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        picked += np.bincount(labels.codes[start:start + len(sel)][sel], minlength=len(labels.names))
        start += len(sel)
    size = labels.counts()
    return [[name, int(p), int(s), int(p) / int(s)] for name, p, s in zip(labels.names, picked, size)]


def gio_curve(scored: Scored, labels: Labels) -> dict:
    """Label -> (pick step, picks of that label so far), both int64, over the picked rows in
    ``gio_order`` order (step 1 is the first pick). Memory: the picked rows only."""
    orders, rows = [], []
    start = 0
    for batch in scored.batches(["gio_order"]):
        x = floats(batch.column(0))
        ok = ~np.isnan(x)
        orders.append(x[ok])
        rows.append(np.flatnonzero(ok) + start)
        start += len(x)
    order = np.concatenate(orders)
    rows = np.concatenate(rows)[np.argsort(order, kind="stable")]
    codes = labels.codes[rows]
    step = np.arange(1, len(rows) + 1, dtype=np.int64)
    out = {}
    for c in dict.fromkeys(codes.tolist()):  # labels in order of their first pick
        at = codes == c
        out[labels.names[c]] = (step[at], np.arange(1, int(at.sum()) + 1, dtype=np.int64))
    return out


def dup_groups(scored: Scored) -> list[list[int]]:
    """[group size, number of groups of that size], by size; groups of one left out.
    Memory: the rows that have a group."""
    groups = [batch.column(0).drop_null().to_numpy() for batch in scored.batches(["dup_group"])]
    _, counts = np.unique(np.concatenate(groups), return_counts=True)
    sizes, n = np.unique(counts[counts > 1], return_counts=True)
    return [[int(s), int(g)] for s, g in zip(sizes, n)]


def dup_pairs(scored: Scored, k: int) -> tuple[pl.DataFrame, int]:
    """(the ``k`` duplicate rows with the highest ``dup_sim`` (or id when it is absent), nulls
    first, ties in row order: columns id, dup_of[, dup_sim]; the number of rows with a dup_of)."""
    key = "dup_sim" if "dup_sim" in scored.names else "id"
    best, count = None, 0
    for batch in scored.batches(["id", "dup_of"] + (["dup_sim"] if key == "dup_sim" else [])):
        df = pl.from_arrow(batch).with_columns(pl.col("id").cast(pl.String)).filter(pl.col("dup_of").is_not_null())
        count += df.height
        best = df if best is None else pl.concat([best, df])
        best = best.sort(key, descending=True, maintain_order=True).head(k)
    return best, count
