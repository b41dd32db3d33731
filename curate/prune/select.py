"""Which rows to keep: conditions (global or per-class quantiles), budgets, random baseline."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import InputError
from curate.io.atomic import check_distinct, check_output
from curate.io.parquet import read_provenance, read_table, write_table
from curate.io.provenance import base_record, fingerprint
from curate.prune.conditions import Bound, Condition, parse_condition

QUANTILE_METHOD = "linear"  # polars' "linear" == numpy's default quantile interpolation


@dataclass(frozen=True)
class PruneConfig:
    """Options of a prune run (see ``curate prune --help``)."""

    keep: tuple[str, ...] = ()
    per_class: bool = False
    keep_null: bool = False
    top: int | None = None
    fraction: float | None = None
    by: str | None = None
    ascending: bool = False
    balanced: bool = False
    random: bool = False
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(cfg: PruneConfig, df: pl.DataFrame, path) -> list[Condition]:
    conds = [parse_condition(k) for k in cfg.keep]
    for c in conds:
        if c.column not in df.columns:
            raise InputError(f"--keep {c.text!r}: {path} has no column {c.column!r}; columns: {', '.join(df.columns)}")
        dtype = df.schema[c.column]
        numeric = dtype.is_numeric() or dtype == pl.Boolean
        if not numeric:
            raise InputError(f"--keep {c.text!r}: column {c.column!r} is {dtype}, not a score; conditions need numbers")
        if any(b.is_quantile for b in c.bounds()) and dtype == pl.Boolean:
            raise InputError(f"--keep {c.text!r}: quantiles of the boolean column {c.column!r} mean nothing; use == true")
    if cfg.top is not None and cfg.fraction is not None:
        raise InputError("pass --top or --fraction, not both")
    if cfg.fraction is not None and not 0 < cfg.fraction <= 1:
        raise InputError(f"--fraction {cfg.fraction}: must be in (0, 1]")
    if cfg.top is not None and cfg.top < 0:
        raise InputError(f"--top {cfg.top}: must be >= 0")
    if (cfg.top is not None or cfg.fraction is not None) and not cfg.by and not cfg.random:
        raise InputError("--top/--fraction need --by COLUMN (or --random for a random subset of that size)")
    if cfg.by and cfg.by not in df.columns:
        raise InputError(f"--by {cfg.by}: {path} has no such column; columns: {', '.join(df.columns)}")
    if (cfg.per_class or cfg.balanced) and "label" not in df.columns:
        raise InputError(f"{path}: --per-class/--balanced need a 'label' column")
    if not conds and cfg.top is None and cfg.fraction is None:
        raise InputError("nothing to do: pass at least one --keep condition, or --top/--fraction")
    return conds


def _resolve(df: pl.DataFrame, c: Condition, b: Bound, per_class: bool) -> tuple[np.ndarray, Any]:
    """Per-row numeric bound and what to report (a number, or {class: number})."""
    n = df.height
    if not b.is_quantile:
        v = b.value
        return np.full(n, float(v)), v
    col = pl.col(c.column).cast(pl.Float64)
    if not per_class:
        q = df.select(col.drop_nulls().quantile(b.quantile, interpolation=QUANTILE_METHOD)).item()
        return np.full(n, np.nan if q is None else q), q
    per = df.group_by("label", maintain_order=True).agg(col.drop_nulls().quantile(b.quantile, interpolation=QUANTILE_METHOD).alias("q"))
    joined = df.select("label").join(per, on="label", how="left", maintain_order="left")
    values = joined["q"].fill_null(np.nan).to_numpy()
    report = {str(k): v for k, v in zip(per["label"].to_list(), per["q"].to_list())}
    return values.astype(np.float64), report


def evaluate(df: pl.DataFrame, conds: list[Condition], per_class: bool, keep_null: bool):
    """Mask of rows meeting every condition, the first condition each other row failed, resolved bounds."""
    n = df.height
    mask = np.ones(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    resolved: dict[str, Any] = {}
    for c in conds:
        series = df[c.column]
        null = series.is_null().to_numpy()
        x = series.cast(pl.Float64).fill_null(np.nan).to_numpy()
        lo, lo_rep = _resolve(df, c, c.low, per_class)
        with np.errstate(invalid="ignore"):
            if c.op == "in":
                hi, hi_rep = _resolve(df, c, c.high, per_class)
                ok = (x >= lo) & (x <= hi)
                resolved[c.text] = {str(c.low): lo_rep, str(c.high): hi_rep}
            else:
                ok = {">": x > lo, ">=": x >= lo, "<": x < lo, "<=": x <= lo, "==": x == lo}[c.op]
                resolved[c.text] = {str(c.low): lo_rep}
        ok = np.where(null, keep_null, ok)
        failed = mask & ~ok
        reason[failed] = c.text
        mask &= ok
    return mask, reason, resolved


def _quota(total: int, groups: dict[Any, int], budget: int) -> dict[Any, int]:
    """Split ``budget`` over groups in proportion to their sizes (largest remainder, ties by order)."""
    raw = {g: budget * n / total for g, n in groups.items()}
    q = {g: int(np.floor(v)) for g, v in raw.items()}
    rest = budget - sum(q.values())
    for g in sorted(raw, key=lambda g: -(raw[g] - q[g]))[:rest]:
        q[g] += 1
    return q


def apply_budget(df: pl.DataFrame, mask: np.ndarray, reason: np.ndarray, cfg: PruneConfig) -> np.ndarray:
    """Keep the top N / fraction F of eligible rows by ``cfg.by`` (optionally per class)."""
    n = df.height
    budget = cfg.top if cfg.top is not None else int(round(cfg.fraction * n))
    labels = df["label"].to_list() if cfg.balanced else [0] * n
    groups: dict[Any, list[int]] = {}
    for i, g in enumerate(labels):
        groups.setdefault(g, []).append(i)
    quota = _quota(n, {g: len(v) for g, v in groups.items()}, budget) if cfg.balanced else {0: budget}
    x = df[cfg.by].cast(pl.Float64).fill_null(np.nan).to_numpy()
    out = np.zeros(n, dtype=bool)
    for g, idx in groups.items():
        idx = np.array([i for i in idx if mask[i] and not np.isnan(x[i])], dtype=np.int64)
        key = x[idx] if cfg.ascending else -x[idx]
        chosen = idx[np.lexsort((idx, key))][: quota[g]]  # ties: earlier rows first
        out[chosen] = True
    cut = mask & ~out
    reason[cut] = f"{'--top ' + str(cfg.top) if cfg.top is not None else '--fraction ' + str(cfg.fraction)} by {cfg.by}"
    return out


def random_like(df: pl.DataFrame, kept: np.ndarray, cfg: PruneConfig) -> np.ndarray:
    """A uniform random subset of all rows with as many rows as ``kept`` (per class with --balanced)."""
    rng = np.random.default_rng(cfg.seed)
    n = df.height
    out = np.zeros(n, dtype=bool)
    if cfg.balanced:
        labels = np.array([str(v) for v in df["label"].to_list()])
        for g in np.unique(labels):
            idx = np.flatnonzero(labels == g)
            out[rng.choice(idx, int(kept[idx].sum()), replace=False)] = True
    else:
        out[rng.choice(n, int(kept.sum()), replace=False)] = True
    return out


def select(df: pl.DataFrame, cfg: PruneConfig, path="scored file"):
    conds = _check(cfg, df, path)
    mask, reason, resolved = evaluate(df, conds, cfg.per_class, cfg.keep_null)
    if cfg.top is not None or cfg.fraction is not None:
        if cfg.by:
            mask = apply_budget(df, mask, reason, cfg)
        else:  # --random with a budget and no ranking column
            budget = cfg.top if cfg.top is not None else int(round(cfg.fraction * df.height))
            idx = np.flatnonzero(mask)[:budget] if budget < mask.sum() else np.flatnonzero(mask)
            mask = np.zeros(df.height, bool)
            mask[idx] = True
    if cfg.random:
        mask = random_like(df, mask, cfg)
        reason = np.where(mask, None, "--random baseline").astype(object)
    reason[mask] = None
    return mask, reason, resolved


def prune(scored: str | Path, output: str | Path, cfg: PruneConfig, source: str | Path | None = None,
          copy: bool = False, dropped: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Keep the rows of SCORED that satisfy ``cfg``; write them (or their source records) to OUTPUT."""
    from curate.prune import writers

    output = Path(output)
    check_distinct(output, dropped)
    check_output(output, overwrite, inputs=(scored, source))
    if dropped is not None:
        check_output(dropped, overwrite, inputs=(scored, source))
    table = read_table(scored)
    if "id" not in table.column_names:
        raise InputError(f"{scored}: no 'id' column; prune reads files written by `curate score`")
    df = pl.from_arrow(table.drop_columns([c for c in ("embedding",) if c in table.column_names]))
    mask, reason, resolved = select(df, cfg, scored)
    prov = read_provenance(scored)
    ids = df["id"].to_list()
    kept_ids = [i for i, k in zip(ids, mask) if k]
    record = dict(prov)
    record["prune"] = {**{k: v for k, v in base_record("prune").items() if k != "tool"}, "config": cfg.to_dict(),
                       "resolved_bounds": resolved, "quantile_interpolation": QUANTILE_METHOD,
                       "scored": fingerprint(scored), "rows_in": len(ids), "rows_kept": len(kept_ids)}
    if source is not None:
        writers.write_source(Path(source), output, set(kept_ids), set(ids), prov, copy=copy)
    else:
        write_table(table.filter(pa.array(mask)), output, record)
    if dropped is not None:
        d = pl.DataFrame({"id": [i for i, k in zip(ids, mask) if not k],
                          "removed_by": [r for r, k in zip(reason, mask) if not k]})
        writers.write_frame(d, Path(dropped))
    summary: dict[str, Any] = {"output": str(output), "rows_in": len(ids), "rows_kept": len(kept_ids),
                               "resolved_bounds": resolved}
    if "label" in df.columns:
        before = df.group_by("label").len().sort("label")
        after = df.filter(pl.Series(mask)).group_by("label").len()
        counts = dict(zip(map(str, after["label"].to_list()), after["len"].to_list()))
        summary["per_class"] = {str(k): {"in": v, "kept": counts.get(str(k), 0)}
                                for k, v in zip(before["label"].to_list(), before["len"].to_list())}
    return summary
