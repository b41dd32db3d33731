"""The report's numbers, computed from the score columns only (never the whole embedding column).

Every number here is checked in tests against polars/scipy on data with nulls and NaN:
quantiles use linear interpolation over the finite values; per-class ``n`` counts the finite
values of that column in the class (so for ``gio_order`` it is the number picked, not the class
size); Spearman is computed on the rows where both columns are finite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import InputError
from curate.io.parquet import embedding_array, open_parquet, open_stream

# Columns that are never scores even if they are numeric.
NOT_SCORES = {"id", "label", "embedding", "gio_selected", "dup_of", "dup_group", "dup_keep", "contam_of"}


def _known_scores() -> tuple[str, ...]:
    """Every numeric column a registered score method writes, in registry order."""
    import pyarrow as pa

    from curate.scores.registry import known_columns

    return tuple(name for name, col in known_columns().items()
                 if (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)) and name not in NOT_SCORES)


# The score columns the report knows by name, in display order: from the score-method registry.
KNOWN_SCORES = _known_scores()
QUANTILES = (0.1, 0.5, 0.9)


def score_columns(schema: dict[str, pl.DataType]) -> list[str]:
    """Known score columns present (in KNOWN_SCORES order), then any other float column."""
    known = [c for c in KNOWN_SCORES if c in schema]
    extra = [c for c, t in schema.items() if t.is_float() and c not in known and c not in NOT_SCORES]
    return known + extra


def read_scores(path: str | Path) -> tuple[pl.DataFrame, list[str], str | None]:
    """(the columns the numbers need, the score columns, the name of a kept text column or None).

    Read: ``id``, ``label``, the score columns and the GIO/duplicate columns only; never the
    embeddings or passthrough text, so memory grows with the number of score columns.
    """
    pf = open_parquet(path)
    schema = pf.schema_arrow
    if "id" not in schema.names:
        raise InputError(f"{path}: no 'id' column; report reads files written by `curate score`")
    empty = pl.from_arrow(schema.empty_table())
    scores = score_columns(empty.schema)
    if not scores:
        raise InputError(f"{path}: no score columns (e.g. el2n, rho); run `curate score` first")
    extra = [c for c in ("label", "gio_selected", "dup_of", "dup_group") if c in schema.names]
    try:
        df = pl.from_arrow(pf.read(columns=["id"] + extra + [c for c in scores if c not in extra]))
    except Exception as e:
        raise InputError(f"{path}: could not read ({type(e).__name__}: {e})") from None
    if df.height == 0:
        raise InputError(f"{path}: has no rows; nothing to report")
    text = next((c for c, t in empty.schema.items() if t == pl.String and c not in ("id", "label", "dup_of")), None)
    return df.with_columns(pl.col("id").cast(pl.String)), scores, text


def finite(col: str) -> pl.Expr:
    """Rows where ``col`` holds a finite number (null, NaN and inf excluded)."""
    x = pl.col(col).cast(pl.Float64)
    return x.is_not_null() & x.is_finite()


def values(df: pl.DataFrame, col: str) -> np.ndarray:
    """The finite values of ``col`` as float64, in row order."""
    return df.filter(finite(col))[col].cast(pl.Float64).to_numpy()


def quantiles(df: pl.DataFrame, col: str, qs=QUANTILES) -> dict[float, float]:
    """Linear-interpolated quantiles of the finite values of ``col``."""
    s = df.filter(finite(col))[col].cast(pl.Float64)
    return {q: float(s.quantile(q, "linear")) for q in qs}


def per_class(df: pl.DataFrame, col: str) -> pl.DataFrame:
    """One row per label: n (finite values of ``col`` in that class), mean, median, min, max.

    Classes with no finite value keep a row with n = 0 and nulls.
    """
    x = pl.col(col).cast(pl.Float64)
    stats = (df.filter(finite(col)).group_by("label")
             .agg(pl.len().alias("n"), x.mean().alias("mean"), x.median().alias("median"),
                  x.min().alias("min"), x.max().alias("max")))
    labels = df.select(pl.col("label").unique())
    out = labels.join(stats, on="label", how="left").with_columns(pl.col("n").fill_null(0).cast(pl.Int64))
    return out.sort("label", nulls_last=True)


def spearman(df: pl.DataFrame, cols: list[str]) -> np.ndarray:
    """k x k Spearman rank correlations, each pair on the rows where both values are finite.

    NaN where fewer than 3 such rows (or a constant column) leave it undefined.
    """
    k = len(cols)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            a, b = cols[i], cols[j]
            pair = df.filter(finite(a) & finite(b)).select(pl.col(a).cast(pl.Float64), pl.col(b).cast(pl.Float64))
            v = pair.select(pl.corr(a, b, method="spearman")).item() if pair.height > 2 else None
            out[i, j] = out[j, i] = np.nan if v is None else v
    return out


def gio_picks(df: pl.DataFrame) -> pl.DataFrame:
    """Per label: picked (gio_selected true), size, share picked."""
    by = df.group_by("label").agg(pl.col("gio_selected").fill_null(False).sum().cast(pl.Int64).alias("picked"),
                                  pl.len().alias("size"))
    return by.with_columns((pl.col("picked") / pl.col("size")).alias("share")).sort("label", nulls_last=True)


def gio_curve(df: pl.DataFrame) -> pl.DataFrame:
    """Picked rows in pick order with, per label, the cumulative count so far (the order curve)."""
    picked = df.filter(pl.col("gio_order").is_not_null()).sort("gio_order").select("gio_order", "label")
    return picked.with_columns(pl.int_range(1, pl.len() + 1).over("label").alias("cum"),
                               pl.int_range(1, pl.len() + 1).alias("step"))


def dup_groups(df: pl.DataFrame) -> pl.DataFrame:
    """Group size -> number of groups with that size (groups of one excluded)."""
    sizes = df.filter(pl.col("dup_group").is_not_null()).group_by("dup_group").len()
    return (sizes.filter(pl.col("len") > 1).group_by(pl.col("len").alias("size"))
            .agg(pl.len().alias("groups")).sort("size"))


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
