"""Streamed `curate prune` gives exactly what the whole-table polars code it replaced gave.

The reference below is that earlier code (polars over every non-list column at once), kept here as
the obviously-correct version; the streamed code reads batches of 17 rows, so every pass crosses
batch boundaries. Compared: kept rows, the --dropped CSV/JSONL bytes, removed counts, resolved
bounds, ignored counts and per-class counts, for every option.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import polars.testing  # noqa: F401
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curate.prune.columns
from curate.io.parquet import embedding_column, read_provenance, write_table
from curate.prune import PruneConfig, parse_condition, prune


def _valid(column):
    return pl.col(column).cast(pl.Float64).drop_nulls().drop_nans()


def _resolve(df, c, b, per_class):
    n = df.height
    if not b.is_quantile:
        return np.full(n, float(b.value)), b.value
    if not per_class:
        q = df.select(_valid(c.column).quantile(b.quantile, interpolation="linear")).item()
        return np.full(n, q), q
    per = df.group_by("label", maintain_order=True).agg(_valid(c.column).quantile(b.quantile, interpolation="linear").alias("q"))
    joined = df.select("label").join(per, on="label", how="left", maintain_order="left")
    return joined["q"].fill_null(np.nan).to_numpy().astype(np.float64), {str(k): v for k, v in zip(per["label"].to_list(), per["q"].to_list())}


def _quota(total, groups, budget):
    raw = {g: budget * n / total for g, n in groups.items()}
    q = {g: int(np.floor(v)) for g, v in raw.items()}
    for g in sorted(raw, key=lambda g: -(raw[g] - q[g]))[:budget - sum(q.values())]:
        q[g] += 1
    return q


def reference(df: pl.DataFrame, cfg: PruneConfig) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
    """(mask, reason per row, resolved bounds, ignored counts): the earlier whole-table code."""
    n = df.height
    conds = [parse_condition(k) for k in cfg.keep]
    mask, reason, resolved = np.ones(n, bool), np.full(n, None, dtype=object), {}
    for c in conds:
        s = df[c.column]
        null = s.is_null().to_numpy()
        if c.is_null_test:
            ok = null if c.op == "==" else ~null
            if s.dtype.is_float():
                ok = ok & ~s.is_nan().fill_null(False).to_numpy()
            resolved[c.text] = {"null": None}
        else:
            x = s.cast(pl.Float64).fill_null(np.nan).to_numpy()
            lo, lo_rep = _resolve(df, c, c.low, cfg.per_class)
            with np.errstate(invalid="ignore"):
                if c.op == "in":
                    hi, hi_rep = _resolve(df, c, c.high, cfg.per_class)
                    ok = (x >= lo) & (x <= hi)
                    resolved[c.text] = {str(c.low): lo_rep, str(c.high): hi_rep}
                else:
                    ok = {">": x > lo, ">=": x >= lo, "<": x < lo, "<=": x <= lo, "==": x == lo, "!=": x != lo}[c.op]
                    resolved[c.text] = {str(c.low): lo_rep}
            ok = np.where(null, cfg.keep_null, ok & ~np.isnan(x))
        reason[mask & ~ok] = c.text
        mask &= ok
    if cfg.top is not None or cfg.fraction is not None:
        budget = cfg.top if cfg.top is not None else int(round(cfg.fraction * n))
        if cfg.by:
            group = df["label"].cast(pl.Utf8) if cfg.balanced else pl.Series("g", [""] * n)
            frame = pl.DataFrame({"i": np.arange(n), "g": group, "x": df[cfg.by].cast(pl.Float64), "ok": mask})
            sizes = frame.group_by("g", maintain_order=True).len()
            quota = _quota(n, dict(zip(sizes["g"].to_list(), sizes["len"].to_list())), budget) if cfg.balanced else {"": budget}
            chosen = (frame.filter(pl.col("ok") & pl.col("x").is_not_null() & pl.col("x").is_not_nan())
                      .sort(["x", "i"], descending=[not cfg.ascending, False])
                      .with_columns(rank=pl.int_range(pl.len()).over("g"))
                      .join(pl.DataFrame({"g": list(quota), "q": list(quota.values())}, schema={"g": pl.Utf8, "q": pl.Int64}), on="g")
                      .filter(pl.col("rank") < pl.col("q"))["i"].to_numpy())
            out = np.zeros(n, dtype=bool)
            out[chosen] = True
            reason[mask & ~out] = f"{'--top ' + str(cfg.top) if cfg.top is not None else '--fraction ' + str(cfg.fraction)} by {cfg.by}"
        else:
            out = np.zeros(n, bool)
            out[np.flatnonzero(mask)[:budget]] = True
            reason[mask & ~out] = f"--top {cfg.top}" if cfg.top is not None else f"--fraction {cfg.fraction}"
        mask = out
    if cfg.random:
        rng = np.random.default_rng(cfg.seed)
        out = np.zeros(n, dtype=bool)
        if cfg.balanced:
            labels = df["label"].cast(pl.Utf8).to_list()
            # Classes in the order of their text (np.unique's), a null label first: np.unique itself
            # cannot sort None among strings (the earlier code crashed here).
            for g in sorted(set(labels), key=lambda t: (t is not None, t or "")):
                idx = np.flatnonzero([v == g for v in labels])
                out[rng.choice(idx, int(mask[idx].sum()), replace=False)] = True
        else:
            out[rng.choice(n, int(mask.sum()), replace=False)] = True
        mask, reason = out, np.where(out, None, "--random baseline").astype(object)
    reason[mask] = None
    ignored = {}
    for c in conds:
        if any(b.is_quantile for b in c.bounds()) and c.column not in ignored:
            s = df[c.column]
            ignored[c.column] = {"null": int(s.null_count()), "nan": int(s.cast(pl.Float64).is_nan().sum() or 0)}
    return mask, reason, resolved, ignored


def _scored(path, n=300, null_label=False):
    rng = np.random.default_rng(7)
    labels = np.array(["b", "a", "c", "10", "9"], dtype=object)[rng.integers(0, 5, n)]
    if null_label:
        labels[rng.random(n) < 0.1] = None
    el2n = rng.random(n)
    el2n[rng.random(n) < 0.05] = np.nan
    table = pa.table({
        # ids that CSV must quote and JSON must escape
        "id": pa.array([f'r"{i},x' if i % 7 == 0 else f"r{i}\\ü\r\n\t\x01/" if i % 11 == 0 else f"r{i}" for i in range(n)]),
        "label": pa.array(labels.tolist(), pa.string()),
        "embedding": embedding_column(rng.normal(size=(n, 4)).astype(np.float32)),
        "el2n": pa.array(el2n, mask=rng.random(n) < 0.05),
        "rho": pa.array(rng.normal(size=n).astype(np.float32)),
        "ties": pa.array(rng.integers(0, 6, n), mask=rng.random(n) < 0.03),  # ints, many ties, some nulls
        "flag": pa.array(rng.random(n) < 0.5),
        "dup_of": pa.array([None if v < 0.7 else "r0" for v in rng.random(n)], pa.string()),
    })
    write_table(table, path, {"step": "score"})
    return path


CASES = [
    dict(keep=("el2n in [q0.10, q0.90]", "rho > 0"), per_class=True),
    dict(keep=("el2n in [q0, q1]", "rho <= q0.5", "ties >= q0.3"), keep_null=True),
    dict(keep=("el2n >= q0.25", "rho < q0.8", "ties != 2"), per_class=True, keep_null=True),
    dict(keep=("dup_of == null", "flag == true", "el2n != null", "ties > 1e-3")),
    dict(keep=("rho > -0.5",), top=37, by="el2n"),
    dict(keep=("el2n > q0.2",), fraction=0.3, by="ties", balanced=True),
    dict(fraction=0.25, by="ties", ascending=True),
    dict(top=100000, by="rho", balanced=True, ascending=True),
    dict(keep=("el2n > 0.1",), top=20, random=True, seed=5),
    dict(keep=("el2n in [q0.1, q0.9]",), per_class=True, random=True, balanced=True, seed=3),
    dict(keep=("rho > 0",), fraction=0.5, by="el2n", random=True, seed=11),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("null_label", [False, True])
def test_streamed_prune_equals_whole_table_reference(tmp_path, monkeypatch, case, null_label):
    opts = CASES[case]
    monkeypatch.setattr(curate.prune.columns, "BATCH_ROWS", 17)
    scored = _scored(tmp_path / "s.parquet", null_label=null_label)
    cfg = PruneConfig(**opts)
    df = pl.read_parquet(scored).drop("embedding")
    mask, reason, resolved, ignored = reference(df, cfg)
    suffix = (".csv", ".jsonl")[(case + null_label) % 2]  # each format in half the cases
    out, dropped = tmp_path / "o.parquet", tmp_path / f"d{suffix}"
    s = prune(scored, out, cfg, dropped=dropped)
    assert pq.read_table(out).column("id").to_pylist() == df["id"].filter(pl.Series(mask)).to_list()
    expect = pl.DataFrame({"id": df["id"].filter(pl.Series(~mask)), "removed_by": pl.Series(reason[~mask].tolist(), dtype=pl.Utf8)})
    want = tmp_path / f"want{suffix}"
    if suffix == ".csv":
        expect.write_csv(want)
    else:
        expect.write_ndjson(want)
    assert dropped.read_bytes() == want.read_bytes()
    assert s["resolved_bounds"] == resolved and s["quantile_ignored"] == ignored
    assert read_provenance(out)["prune"]["resolved_bounds"] == resolved
    counts = pl.Series("reason", reason[~mask].tolist(), dtype=pl.Utf8).value_counts()
    assert s["removed_by"] == dict(zip(counts["reason"].to_list(), counts["count"].to_list()))
    before = df.group_by("label").len().sort("label")
    after = df.filter(pl.Series(mask)).group_by("label").len()
    kept = dict(zip(map(str, after["label"].to_list()), after["len"].to_list()))
    per_class = {str(k): {"in": v, "kept": kept.get(str(k), 0)} for k, v in zip(before["label"].to_list(), before["len"].to_list())}
    assert list(s["per_class"].items()) == list(per_class.items())


def test_dropped_parquet_holds_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(curate.prune.columns, "BATCH_ROWS", 17)
    scored = _scored(tmp_path / "s.parquet")
    prune(scored, tmp_path / "o.parquet", PruneConfig(keep=("el2n in [q0.1, q0.9]", "rho > 0")), dropped=tmp_path / "d.parquet")
    prune(scored, tmp_path / "o2.parquet", PruneConfig(keep=("el2n in [q0.1, q0.9]", "rho > 0")), dropped=tmp_path / "d.csv")
    pl.testing.assert_frame_equal(pl.read_parquet(tmp_path / "d.parquet"), pl.read_csv(tmp_path / "d.csv", infer_schema=False))
