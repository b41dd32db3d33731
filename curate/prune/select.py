"""Which rows to keep: conditions (global or per-class quantiles), budgets, random baseline.

Everything is computed from the scored file one column at a time (curate.prune.columns): per row,
memory holds a keep mask, a reason code and a label code, and while a quantile is taken the
valid values of one column."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import InputError
from curate.io.atomic import atomic_group, check_distinct, check_output
from curate.io.fs import as_path, is_uri
from curate.io.parquet import ROW_GROUP_ROWS, WRITE_OPTIONS, open_stream, read_provenance, with_provenance
from curate.io.provenance import base_record, fingerprint
from curate.prune.columns import LabelCodes, ScoredColumns, grouped_valid, quantile_linear
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


def _resolve_quantiles(cols: ScoredColumns, c: Condition, labels: LabelCodes | None, per_class: bool,
                       ignored: dict[str, dict[str, int]]) -> dict[Bound, tuple[Any, Any]]:
    """Each quantile bound of ``c``: (per-class (k,) float64 bounds or one number, what to report)."""
    qs = [b for b in c.bounds() if b.is_quantile]
    if not qs:
        return {}
    groups = labels.codes if per_class else None
    buf, offsets, nulls, nans = grouped_valid(cols, c.column, groups, labels.k if labels is not None else 1)
    ignored.setdefault(c.column, {"null": nulls, "nan": nans})
    out: dict[Bound, tuple[Any, Any]] = {}
    for b in qs:
        per = [quantile_linear(buf[offsets[g]:offsets[g + 1]], b.quantile) for g in range(len(offsets) - 1)]
        if not per_class:
            if per[0] is None:
                raise InputError(f"--keep {c.text!r}: column {c.column!r} has no value that is neither null nor NaN; no quantile to take")
            out[b] = (per[0], per[0])
        else:
            report = {str(v): q for v, q in zip(labels.values, per)}
            # A row without a label has no class to bound it: it fails (the bound is reported all the same).
            bound = [np.nan if q is None or v is None else q for v, q in zip(labels.values, per)]
            out[b] = (np.array(bound, dtype=np.float64), report)
    return out


def evaluate(cols: ScoredColumns, conds: list[Condition], labels: LabelCodes | None, per_class: bool, keep_null: bool):
    """Mask of rows meeting every condition, the first condition each other row failed, resolved bounds,
    and for each column a quantile is taken of, how many nulls and NaN the quantile ignored.

    ``reason``: (n,) codes, 0 for a row meeting every condition, i + 1 for a row failing ``conds[i]``
    first. NaN never satisfies a condition; a null satisfies one only with ``keep_null`` (or ``== null``).
    Conditions are evaluated one column at a time, batch by batch.
    """
    n = cols.n
    mask = np.ones(n, dtype=bool)
    reason = np.zeros(n, dtype=np.uint8 if len(conds) + 3 <= 2**8 else np.uint16)
    resolved: dict[str, Any] = {}
    ignored: dict[str, dict[str, int]] = {}
    for i, c in enumerate(conds):
        if c.is_null_test:
            resolved[c.text] = {"null": None}
            is_float = cols.schema[c.column].is_float()
            start = 0
            for batch in cols.batches([c.column]):
                arr = batch.column(0)
                null = arr.is_null().to_numpy(zero_copy_only=False)
                ok = null if c.op == "==" else ~null
                if is_float:
                    ok = ok & ~pc.is_nan(arr).fill_null(False).to_numpy(zero_copy_only=False)
                _narrow(mask, reason, start, ok, i + 1)
                start += len(arr)
            continue
        quantiles = _resolve_quantiles(cols, c, labels, per_class, ignored)
        bound = lambda b: quantiles[b] if b.is_quantile else (float(b.value), b.value)  # noqa: E731
        lo, lo_rep = bound(c.low)
        if c.op == "in":
            hi, hi_rep = bound(c.high)
            with np.errstate(invalid="ignore"):
                if np.any(np.asarray(lo) > np.asarray(hi)):
                    raise InputError(f"--keep {c.text!r}: malformed condition, the bounds resolve to an empty interval "
                                     f"({lo_rep} > {hi_rep}); write the low bound first")
            resolved[c.text] = {str(c.low): lo_rep, str(c.high): hi_rep}
        else:
            resolved[c.text] = {str(c.low): lo_rep}
        for start, x, null in cols.floats(c.column):
            rows = labels.codes[start:start + len(x)] if per_class else None
            with np.errstate(invalid="ignore"):
                if c.op == "in":
                    ok = (x >= _per_row(lo, rows)) & (x <= _per_row(hi, rows))
                else:
                    b = _per_row(lo, rows)
                    ok = {">": x > b, ">=": x >= b, "<": x < b, "<=": x <= b, "==": x == b, "!=": x != b}[c.op]
            _narrow(mask, reason, start, np.where(null, keep_null, ok & ~np.isnan(x)), i + 1)
    return mask, reason, resolved, ignored


def _per_row(bound: float | np.ndarray, rows: np.ndarray | None) -> float | np.ndarray:
    """A bound for each row of a batch: one number, or the (k,) per-class bounds at the rows' label codes."""
    return bound[rows] if isinstance(bound, np.ndarray) else bound


def _narrow(mask: np.ndarray, reason: np.ndarray, start: int, ok: np.ndarray, code: int) -> None:
    """Rows ``start:start + len(ok)`` stay kept only where ``ok``; a row leaving now records ``code``."""
    m = mask[start:start + len(ok)]
    reason[start:start + len(ok)][m & ~ok] = code
    m &= ok


def _quota(total: int, groups: dict[Any, int], budget: int) -> dict[Any, int]:
    """Split ``budget`` over groups in proportion to their sizes (largest remainder, ties by order)."""
    raw = {g: budget * n / total for g, n in groups.items()}
    q = {g: int(np.floor(v)) for g, v in raw.items()}
    rest = budget - sum(q.values())
    for g in sorted(raw, key=lambda g: -(raw[g] - q[g]))[:rest]:
        q[g] += 1
    return q


def apply_budget(cols: ScoredColumns, mask: np.ndarray, labels: LabelCodes | None, cfg: PruneConfig) -> np.ndarray:
    """Keep the top N / fraction F of eligible rows by ``cfg.by`` (optionally per class); ties: earlier rows first.

    Per group, the rank-``quota`` value ``t`` is found by a partition of the group's eligible values;
    then one pass keeps the rows better than ``t`` and, in file order, as many rows equal to ``t``
    as the quota still allows.
    """
    n = cols.n
    budget = cfg.top if cfg.top is not None else int(round(cfg.fraction * n))
    if cfg.balanced:
        groups, k = labels.codes, labels.k
        quota = _quota(n, dict(enumerate(labels.counts().tolist())), budget)
        # A null label is its own group for the split, but never joins its quota: no row of it is chosen.
        q = np.array([0 if labels.values[g] is None else quota[g] for g in range(k)], dtype=np.int64)
    else:
        groups, k, q = None, 1, np.array([budget], dtype=np.int64)
    buf, offsets, _, _ = grouped_valid(cols, cfg.by, groups, k, eligible=mask)
    take_all = np.zeros(k, dtype=bool)
    t = np.full(k, np.nan)
    ties = np.zeros(k, dtype=np.int64)  # rows equal to t still to take
    for g in range(k):
        seg = buf[offsets[g]:offsets[g + 1]]
        m = len(seg)
        if q[g] >= m:
            take_all[g] = True
        elif q[g] > 0:
            kth = q[g] - 1 if cfg.ascending else m - q[g]
            seg.partition(kth)
            t[g] = seg[kth]
            better = int((seg < t[g]).sum() if cfg.ascending else (seg > t[g]).sum())
            ties[g] = q[g] - better
    del buf
    out = np.zeros(n, dtype=bool)
    for start, x, _ in cols.floats(cfg.by):
        sl = slice(start, start + len(x))
        g = np.zeros(len(x), np.int64) if groups is None else groups[sl].astype(np.int64)
        ok = mask[sl] & ~np.isnan(x)
        tg = t[g]
        with np.errstate(invalid="ignore"):
            better = (x < tg) if cfg.ascending else (x > tg)
            tie = np.flatnonzero(ok & (x == tg))
        chosen = ok & (take_all[g] | better)
        if len(tie):
            tg_ = g[tie]
            order = np.argsort(tg_, kind="stable")
            sorted_g = tg_[order]
            first = np.searchsorted(sorted_g, sorted_g, side="left")
            rank = np.empty(len(tie), dtype=np.int64)
            rank[order] = np.arange(len(tie)) - first
            take = rank < ties[tg_]
            chosen[tie[take]] = True
            ties -= np.bincount(tg_[take], minlength=k)
        out[sl] = chosen
    return out


def random_like(labels: LabelCodes | None, n: int, kept: np.ndarray, cfg: PruneConfig) -> np.ndarray:
    """A uniform random subset of all rows with as many rows as ``kept`` (per class with --balanced)."""
    rng = np.random.default_rng(cfg.seed)
    out = np.zeros(n, dtype=bool)
    if cfg.balanced:
        kept_per = labels.counts(kept)
        text = pl.from_arrow(pa.array(labels.values, type=labels.dtype)).cast(pl.Utf8).to_list()
        # One draw per class, in the order of the classes' text (as np.unique sorts them); a null label first.
        for g in sorted(range(labels.k), key=lambda g: (text[g] is not None, text[g] or "")):
            idx = np.flatnonzero(labels.codes == g)
            out[rng.choice(idx, int(kept_per[g]), replace=False)] = True
    else:
        out[rng.choice(n, int(kept.sum()), replace=False)] = True
    return out


def select(cols: ScoredColumns, cfg: PruneConfig, labels: LabelCodes | None, path="scored file"):
    """(kept mask, reason codes, reason texts, resolved bounds, quantile-ignored counts) over the file's scores.

    ``texts[reason[i]]`` is the condition that removed row i (None for a kept row).
    """
    conds = _check(cfg, cols.schema, path)
    mask, reason, resolved, ignored = evaluate(cols, conds, labels, cfg.per_class, cfg.keep_null)
    texts: list[str | None] = [None] + [c.text for c in conds]
    if cfg.top is not None or cfg.fraction is not None:
        cut = mask.copy()
        if cfg.by:
            mask = apply_budget(cols, mask, labels, cfg)
            texts.append(f"{'--top ' + str(cfg.top) if cfg.top is not None else '--fraction ' + str(cfg.fraction)} by {cfg.by}")
        else:  # --random with a budget and no ranking column: the first eligible rows
            budget = cfg.top if cfg.top is not None else int(round(cfg.fraction * cols.n))
            mask = _first(mask, budget)
            texts.append(f"--top {cfg.top}" if cfg.top is not None else f"--fraction {cfg.fraction}")
        reason[cut & ~mask] = len(texts) - 1
        del cut
    if cfg.random:
        mask = random_like(labels, cols.n, mask, cfg)
        texts.append("--random baseline")
        reason[:] = len(texts) - 1
    reason[mask] = 0
    return mask, reason, texts, resolved, ignored


def _first(mask: np.ndarray, budget: int, block: int = 1 << 20) -> np.ndarray:
    """``mask`` with only its first ``budget`` true rows left true (counted block by block)."""
    out = mask.copy()
    for s in range(0, len(out), block):
        part = out[s:s + block]
        part &= np.cumsum(part, dtype=np.int64) <= budget
        budget -= int(part.sum())
    return out


def removed_counts(reason: np.ndarray, mask: np.ndarray, texts: list[str | None]) -> dict[str, int]:
    """How many rows each condition removed (each row counted under the first condition it failed), most first."""
    counts: dict[str, int] = {}
    for code, c in enumerate(np.bincount(reason[~mask], minlength=len(texts)).tolist()):
        if c:
            counts[texts[code]] = counts.get(texts[code], 0) + c
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


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
    cols = ScoredColumns(scored)
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
    labels = cols.labels() if "label" in cols.schema else None
    mask, reason, texts, resolved, ignored = select(cols, cfg, labels, scored)
    removed = removed_counts(reason, mask, texts)
    n_kept = int(mask.sum())
    if n_kept == 0 and not cfg.allow_empty:
        raise InputError(f"no row is kept ({cols.n} in; removed: "
                         f"{', '.join(f'{k!r} {v}' for k, v in removed.items())}); loosen the conditions or pass --allow-empty")
    record = dict(prov)
    record["prune"] = {**{k: v for k, v in base_record("prune").items() if k != "tool"}, "config": cfg.to_dict(),
                       "resolved_bounds": resolved, "quantile_interpolation": QUANTILE_METHOD, "quantile_ignored": ignored,
                       "scored": fingerprint(scored), "rows_in": cols.n, "rows_kept": n_kept, "removed_by": removed}
    with atomic_group([output] + ([dropped] if dropped is not None else [])) as tmps:
        if dir_out:
            tmps[0].mkdir()
        if src is None:
            _write_kept(scored, mask, record, tmps[0])
        else:
            scored_ids = lambda: _scored_ids(cols, mask)  # noqa: E731  read again by each pass over the source
            if isinstance(src, writers.ImageFolderSource):
                writers.write_images(src, scored_ids, tmps[0], copy)
            else:
                id_rule = (prov.get("source") or {}).get("id_rule", "")
                id_col = id_rule[len("column "):] if id_rule.startswith("column ") else None
                writers.write_tables(src, not dir_out, id_col, scored_ids, tmps[0])
        if dropped is not None:
            writers.write_dropped(_dropped_rows(cols, mask, reason, texts), tmps[1], dropped.name)
    summary: dict[str, Any] = {"output": str(output), "rows_in": cols.n, "rows_kept": n_kept,
                               "removed_by": removed, "resolved_bounds": resolved, "quantile_ignored": ignored}
    if labels is not None:
        before, after = labels.counts(), labels.counts(mask)
        summary["per_class"] = {str(labels.values[g]): {"in": int(before[g]), "kept": int(after[g])} for g in labels.sorted_order()}
    return summary


def _scored_ids(cols: ScoredColumns, mask: np.ndarray):
    """(ids as Arrow strings, keep flags) of the scored file, batch by batch in file order."""
    start = 0
    for batch in cols.batches(["id"]):
        yield pc.cast(batch.column(0), pa.string()), mask[start:start + batch.num_rows]
        start += batch.num_rows


def _dropped_rows(cols: ScoredColumns, mask: np.ndarray, reason: np.ndarray, texts: list[str | None]):
    """(ids, removing conditions) of the removed rows as Arrow strings, batch by batch in file order."""
    names = pa.array(texts, pa.string())
    start = 0
    for batch in cols.batches(["id"]):
        drop = ~mask[start:start + batch.num_rows]
        codes = reason[start:start + batch.num_rows][drop]
        start += batch.num_rows
        yield pc.cast(batch.column(0), pa.string()).filter(pa.array(drop)), names.take(pa.array(codes))


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
