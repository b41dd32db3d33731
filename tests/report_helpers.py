"""Small scored files for the report tests: nulls, NaN, GIO picks, near-duplicate columns, markup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.io.parquet import embedding_column, write_table

XSS = ('<script>alert(1)</script>', '"><img src=x onerror=alert(2)>', "'><svg onload=alert(3)>")


def scored_with_nulls(path: Path, n: int = 240, seed: int = 0, extra: dict | None = None, ids=None,
                      labels=None, dim: int = 6) -> Path:
    """Scores with nulls and NaN in several columns, gio picks on ~20 % of rows, dup columns."""
    rng = np.random.default_rng(seed)
    lab = labels or np.array(["a", "b", "c"])[rng.integers(0, 3, n)].tolist()
    order = np.where(rng.random(n) < 0.2, np.arange(n), -1)
    el2n = rng.random(n) * 1.4
    rho = rng.normal(size=n)
    grand = rng.random(n) * 3
    il = rng.lognormal(0, 2.0, n)  # skewed: drawn on a log axis
    groups = np.arange(n) // 3
    dup_of = [None if i % 3 == 0 or i % 7 else f"r{3 * (i // 3):04d}" for i in range(n)]
    cols = {
        "id": pa.array(ids or [f"r{i:04d}" for i in range(n)]),
        "label": pa.array(lab),
        "text": pa.array([f"text of row {i}" for i in range(n)]),
        "embedding": embedding_column(rng.normal(size=(n, dim)).astype(np.float32)),
        "el2n": pa.array(el2n, mask=rng.random(n) < 0.1),
        "rho": pa.array(rho, mask=rng.random(n) < 0.15),
        "grand": pa.array(np.where(rng.random(n) < 0.05, np.nan, grand)),
        "il_loss": pa.array(il),
        "gio_selected": pa.array(order >= 0),
        "gio_order": pa.array(order, pa.int32(), mask=order < 0),
        "dup_of": pa.array(dup_of, pa.string()),
        "dup_sim": pa.array(np.where([d is None for d in dup_of], rng.random(n) * 0.9, 0.97)),
        "dup_group": pa.array(groups, pa.int64()),
    }
    cols.update(extra or {})
    write_table(pa.table(cols), path, {"step": "score", "source": {"id_rule": "column id", "root": ""}})
    return path
