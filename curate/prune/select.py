"""Which rows to keep: conditions (global or per-class quantiles), budgets, random baseline."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import InputError
from curate.io.atomic import atomic_group, check_distinct, check_output
from curate.io.fs import as_path, is_uri
from curate.io.parquet import ROW_GROUP_ROWS, WRITE_OPTIONS, open_parquet, open_stream, read_provenance, with_provenance
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
    allow_empty: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_TOP = 10**12
MAX_SEED = 2**32 - 1


def validate_options(cfg: PruneConfig) -> list[Condition]:
    """Check every option that needs no data; return the parsed conditions."""
    conds = [parse_condition(k) for k in cfg.keep]
    if cfg.top is not None and cfg.fraction is not None:
        raise InputError("pass --top or --fraction, not both")
    if cfg.fraction is not None and not 0 < cfg.fraction <= 1:  # NaN fails this too
        raise InputError(f"--fraction {cfg.fraction}: must be in (0, 1]")
    if cfg.top is not None and not 1 <= cfg.top <= MAX_TOP:
        raise InputError(f"--top {cfg.top}: must be an integer from 1 to {MAX_TOP}")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise InputError(f"--seed {cfg.seed}: must be an integer from 0 to {MAX_SEED}")
    if (cfg.top is not None or cfg.fraction is not None) and not cfg.by and not cfg.random:
        raise InputError("--top/--fraction need --by COLUMN (or --random for a random subset of that size)")
    if cfg.by and cfg.top is None and cfg.fraction is None:
        raise InputError(f"--by {cfg.by}: ranks rows for --top/--fraction; pass one of them")
    if not conds and cfg.top is None and cfg.fraction is None:
        raise InputError("nothing to do: pass at least one --keep condition, or --top/--fraction")
    return conds


def _check(cfg: PruneConfig, schema: pl.Schema, path) -> list[Condition]:
    conds = validate_options(cfg)
    columns = list(schema.keys())
    for c in conds:
        if c.column not in schema:
            raise InputError(f"--keep {c.text!r}: {path} has no column {c.column!r}; columns: {', '.join(columns)}")
        dtype = schema[c.column]
        if c.is_null_test:
            continue  # any column type can be null
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise InputError(f"--keep {c.text!r}: column {c.column!r} is {dtype}, not a score; conditions need numbers "
                             f"(or '{c.column} == null' / '!= null')")
        if any(b.is_quantile for b in c.bounds()) and dtype == pl.Boolean:
            raise InputError(f"--keep {c.text!r}: quantiles of the boolean column {c.column!r} mean nothing; use == true")
    if cfg.by and cfg.by not in schema:
        raise InputError(f"--by {cfg.by}: {path} has no such column; columns: {', '.join(columns)}")
    if cfg.by and not (schema[cfg.by].is_numeric() or schema[cfg.by] == pl.Boolean):
        raise InputError(f"--by {cfg.by}: column is {schema[cfg.by]}, not a score; rank by a numeric column")
    if (cfg.per_class or cfg.balanced) and "label" not in schema:
        raise InputError(f"{path}: --per-class/--balanced need a 'label' column")
    return conds


def _valid(column: str) -> pl.Expr:
    """The values quantiles are taken over: nulls and NaN left out (they are counted separately)."""
    return pl.col(column).cast(pl.Float64).drop_nulls().drop_nans()


def _resolve(df: pl.DataFrame, c: Condition, b: Bound, per_class: bool) -> tuple[np.ndarray, Any]:
    """Per-row numeric bound and what to report (a number, or {class: number})."""
    n = df.height
    if not b.is_quantile:
        v = b.value
        return np.full(n, float(v)), v
    if not per_class:
        q = df.select(_valid(c.column).quantile(b.quantile, interpolation=QUANTILE_METHOD)).item()
        if q is None:
            raise InputError(f"--keep {c.text!r}: column {c.column!r} has no value that is neither null nor NaN; no quantile to take")
        return np.full(n, q), q
    per = df.group_by("label", maintain_order=True).agg(_valid(c.column).quantile(b.quantile, interpolation=QUANTILE_METHOD).alias("q"))
    joined = df.select("label").join(per, on="label", how="left", maintain_order="left")
    values = joined["q"].fill_null(np.nan).to_numpy()
    report = {str(k): v for k, v in zip(per["label"].to_list(), per["q"].to_list())}
    return values.astype(np.float64), report


def ignored_counts(df: pl.DataFrame, conds: list[Condition]) -> dict[str, dict[str, int]]:
    """For each column a quantile is taken of: how many nulls and NaN the quantile ignored."""
    out: dict[str, dict[str, int]] = {}
    for c in conds:
        if any(b.is_quantile for b in c.bounds()) and c.column not in out:
            s = df[c.column]
            nan = int(s.cast(pl.Float64).is_nan().sum() or 0)
            out[c.column] = {"null": int(s.null_count()), "nan": nan}
    return out


def evaluate(df: pl.DataFrame, conds: list[Condition], per_class: bool, keep_null: bool):
    """Mask of rows meeting every condition, the first condition each other row failed, resolved bounds.

    NaN never satisfies a condition; a null satisfies one only with ``keep_null`` (or ``== null``).
    """
    n = df.height
    mask = np.ones(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    resolved: dict[str, Any] = {}
    for c in conds:
        series = df[c.column]
        null = series.is_null().to_numpy()
        if c.is_null_test:
            ok = null if c.op == "==" else ~null
            if series.dtype.is_float():
                ok = ok & ~series.is_nan().fill_null(False).to_numpy()
            resolved[c.text] = {"null": None}
        else:
            x = series.cast(pl.Float64).fill_null(np.nan).to_numpy()
            lo, lo_rep = _resolve(df, c, c.low, per_class)
            with np.errstate(invalid="ignore"):
                if c.op == "in":
                    hi, hi_rep = _resolve(df, c, c.high, per_class)
                    if np.any(lo > hi):
                        raise InputError(f"--keep {c.text!r}: malformed condition, the bounds resolve to an empty interval "
                                         f"({lo_rep} > {hi_rep}); write the low bound first")
                    ok = (x >= lo) & (x <= hi)
                    resolved[c.text] = {str(c.low): lo_rep, str(c.high): hi_rep}
                else:
                    ok = {">": x > lo, ">=": x >= lo, "<": x < lo, "<=": x <= lo, "==": x == lo, "!=": x != lo}[c.op]
                    resolved[c.text] = {str(c.low): lo_rep}
            ok = np.where(null, keep_null, ok & ~np.isnan(x))
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
    """Keep the top N / fraction F of eligible rows by ``cfg.by`` (optionally per class); ties: earlier rows first."""
    n = df.height
    budget = cfg.top if cfg.top is not None else int(round(cfg.fraction * n))
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
    cut = mask & ~out
    reason[cut] = f"{'--top ' + str(cfg.top) if cfg.top is not None else '--fraction ' + str(cfg.fraction)} by {cfg.by}"
    return out


def random_like(df: pl.DataFrame, kept: np.ndarray, cfg: PruneConfig) -> np.ndarray:
    """A uniform random subset of all rows with as many rows as ``kept`` (per class with --balanced)."""
    rng = np.random.default_rng(cfg.seed)
    n = df.height
    out = np.zeros(n, dtype=bool)
    if cfg.balanced:
        labels = df["label"].cast(pl.Utf8).to_numpy()
        for g in np.unique(labels):  # one draw per class, not per row
            idx = np.flatnonzero(labels == g)
            out[rng.choice(idx, int(kept[idx].sum()), replace=False)] = True
    else:
        out[rng.choice(n, int(kept.sum()), replace=False)] = True
    return out


def select(df: pl.DataFrame, cfg: PruneConfig, path="scored file"):
    """(kept mask, removing condition per row or None, resolved bounds) over the score columns ``df``."""
    conds = _check(cfg, df.schema, path)
    mask, reason, resolved = evaluate(df, conds, cfg.per_class, cfg.keep_null)
    if cfg.top is not None or cfg.fraction is not None:
        if cfg.by:
            mask = apply_budget(df, mask, reason, cfg)
        else:  # --random with a budget and no ranking column
            budget = cfg.top if cfg.top is not None else int(round(cfg.fraction * df.height))
            idx = np.flatnonzero(mask)[:budget]
            cut = mask.copy()
            mask = np.zeros(df.height, bool)
            mask[idx] = True
            reason[cut & ~mask] = f"--top {cfg.top}" if cfg.top is not None else f"--fraction {cfg.fraction}"
    if cfg.random:
        mask = random_like(df, mask, cfg)
        reason = np.where(mask, None, "--random baseline").astype(object)
    reason[mask] = None
    return mask, reason, resolved


def removed_counts(reason: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    """How many rows each condition removed (each row counted under the first condition it failed)."""
    removed = pl.Series("reason", reason[~mask].tolist(), dtype=pl.Utf8).value_counts(sort=True, name="n")
    return dict(zip(removed["reason"].to_list(), removed["n"].to_list()))


def check_paths(scored: Path, output: Path, dropped: Path | None, source: Path | None, overwrite: bool) -> None:
    """Outputs distinct from each other and from every input, and replaceable; locks them (curate.io.atomic)."""
    check_distinct(output, dropped)
    if dropped is not None and dropped.is_dir():
        raise InputError(f"--dropped {dropped}: is a directory; name a .csv, .jsonl or .parquet file")
    src_dir = source if source is not None and source.is_dir() else None
    for flag, out in [("-o", output)] + ([("--dropped", dropped)] if dropped is not None else []):
        if src_dir is not None and src_dir.resolve() in out.resolve().parents:
            raise InputError(f"{flag} {out}: is inside --source {source}; write the result outside it")
        check_output(out, overwrite, inputs=[scored, source])


def check_source(source_spec: Path, prov: dict[str, Any], scored: Path):
    """Open ``--source`` as embed would, and prove it is byte for byte the input that was embedded."""
    from curate.io.sources import open_source

    recorded = prov.get("inputs")
    if not recorded:
        raise InputError(f"--source {source_spec}: {scored} records no embedded input (provenance 'inputs'); "
                         "--source needs a file made by `curate embed` then `curate score`")
    src = open_source(source_spec)
    now = src.fingerprint()
    key = lambda fs: [(f.get("size"), f.get("sha256"), f.get("files")) for f in fs]  # noqa: E731
    if key(now) != key(recorded):
        if len(now) != len(recorded):
            what = f"it has {len(now)} file(s), {len(recorded)} were embedded"
        else:
            bad = next(n for n, r in zip(now, recorded) if key([n]) != key([r]))
            what = f"{bad['path']} differs (size {bad['size']}, sha256 {bad['sha256'][:12]}...)"
        raise InputError(f"--source {source_spec}: changed since it was embedded ({what}); "
                         "pass the input exactly as embedded, or re-run `curate embed` and `curate score` on it")
    return src


def score_frame(scored: Path) -> tuple[pq.ParquetFile, pl.DataFrame]:
    """The scored file and its score columns only: embeddings (list columns) are never loaded."""
    pf = open_parquet(scored)
    schema = pf.schema_arrow
    if "id" not in schema.names:
        raise InputError(f"{scored}: no 'id' column; prune reads files written by `curate score`")
    cols = [f.name for f in schema if not (pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
                                           or pa.types.is_large_list(f.type))]
    try:
        return pf, pl.from_arrow(pf.read(columns=cols))
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{scored}: could not read ({type(e).__name__}: {e})") from None


def prune(scored: str | Path, output: str | Path, cfg: PruneConfig, source: str | Path | None = None,
          copy: bool = False, dropped: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Keep the rows of SCORED that satisfy ``cfg``; write them (or their source records) to OUTPUT.

    ``-o`` and ``--dropped`` are committed together: both appear, or neither changes.
    """
    from curate.prune import writers

    scored, output = as_path(scored), as_path(output)
    dropped = as_path(dropped) if dropped is not None else None
    validate_options(cfg)
    check_paths(scored, output, dropped, as_path(source) if source is not None else None, overwrite)
    pf, df = score_frame(scored)
    prov = read_provenance(scored)
    src = None
    if source is not None:
        src = check_source(as_path(source), prov, scored)
        single = as_path(source).is_file()
        if single and output.suffix.lower() != as_path(source).suffix.lower():
            raise InputError(f"-o {output}: --source is {src.fmt.upper()}, so the output must end in {as_path(source).suffix}")
        if not single and output.suffix.lower() in (".csv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"):
            raise InputError(f"-o {output}: --source {source} is a {'folder' if as_path(source).is_dir() else 'pattern'}, "
                             "so the output is a folder; name one without a file suffix")
    dir_out = src is not None and not as_path(source).is_file()
    if dir_out and is_uri(output):
        raise InputError(f"-o {output}: folder outputs on object storage are not supported; "
                         "write the folder locally and copy it")
    if dir_out and output.is_file():
        raise InputError(f"-o {output}: is a file, but the output of this --source is a folder; name a folder")
    if not dir_out and output.is_dir():
        raise InputError(f"-o {output}: is a directory; name a file")
    mask, reason, resolved = select(df, cfg, scored)
    removed = removed_counts(reason, mask)
    n_kept = int(mask.sum())
    if n_kept == 0 and not cfg.allow_empty:
        raise InputError(f"no row is kept ({df.height} in; removed: "
                         f"{', '.join(f'{k!r} {v}' for k, v in removed.items())}); loosen the conditions or pass --allow-empty")
    ids = df["id"].cast(pl.Utf8).to_arrow()
    keep_ids = ids.filter(pa.array(mask))
    ignored = ignored_counts(df, [parse_condition(k) for k in cfg.keep])
    record = dict(prov)
    record["prune"] = {**{k: v for k, v in base_record("prune").items() if k != "tool"}, "config": cfg.to_dict(),
                       "resolved_bounds": resolved, "quantile_interpolation": QUANTILE_METHOD, "quantile_ignored": ignored,
                       "scored": fingerprint(scored), "rows_in": df.height, "rows_kept": n_kept, "removed_by": removed}
    with atomic_group([output] + ([dropped] if dropped is not None else [])) as tmps:
        if dir_out:
            tmps[0].mkdir()
        if src is None:
            _write_kept(scored, mask, record, tmps[0])
        elif isinstance(src, writers.ImageFolderSource):
            writers.write_images(src, keep_ids, ids, tmps[0], copy)
        else:
            id_rule = (prov.get("source") or {}).get("id_rule", "")
            id_col = id_rule[len("column "):] if id_rule.startswith("column ") else None
            writers.write_tables(src, not dir_out, id_col, keep_ids, ids, tmps[0])
        if dropped is not None:
            writers.write_dropped(ids.filter(pa.array(~mask)), pa.array(reason[~mask].tolist(), pa.string()), tmps[1], dropped.name)
    summary: dict[str, Any] = {"output": str(output), "rows_in": df.height, "rows_kept": n_kept,
                               "removed_by": removed, "resolved_bounds": resolved, "quantile_ignored": ignored}
    if "label" in df.columns:
        before = df.group_by("label").len().sort("label")
        after = df.filter(pl.Series(mask)).group_by("label").len()
        counts = dict(zip(map(str, after["label"].to_list()), after["len"].to_list()))
        summary["per_class"] = {str(k): {"in": v, "kept": counts.get(str(k), 0)}
                                for k, v in zip(before["label"].to_list(), before["len"].to_list())}
    return summary


def _write_kept(scored: Path, mask: np.ndarray, record: dict[str, Any], out: Path, batch_rows: int = ROW_GROUP_ROWS) -> None:
    """Kept rows of the scored file, batch by batch: memory holds one batch, never the whole file.

    A streaming reader (no pre-buffered column chunks) and batches of one row group: a whole-chunk
    reader with larger batches held over 1 GB at 400k rows x 384 d, growing with the file."""
    pf = open_stream(scored)
    schema = with_provenance(pf.schema_arrow.empty_table(), record).schema
    start = 0
    with pq.ParquetWriter(out, schema, **WRITE_OPTIONS) as writer:
        for batch in pf.iter_batches(batch_size=batch_rows, use_threads=False):
            part = mask[start:start + batch.num_rows]
            start += batch.num_rows
            if part.any():
                writer.write_table(pa.Table.from_batches([batch.filter(pa.array(part))], schema=schema))
