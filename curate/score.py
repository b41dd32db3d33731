"""The score step: add score columns to a Parquet file of embeddings, keyed by ``id``.

Each method is a ``ScoreMethod`` in ``curate/scores/`` listed in ``curate.scores.registry``.
``score()`` checks the options, builds one ``ScoreContext`` (the snapshot heads, the IL model and
the target are loaded lazily and at most once), computes each requested method and streams the
pool's columns plus the new ones to OUTPUT. Re-running with another method adds its columns and
keeps the others; re-running a method replaces its columns. Each column's parameters go to the
footer under ``scores``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curate.errors import InputError
from curate.io.atomic import atomic_path, check_output
from curate.io.columns import LazyColumn, as_column
from curate.io.fs import as_path
from curate.io.parquet import ROW_GROUP_ROWS, WRITE_OPTIONS, compact_scores, open_parquet, open_stream, read_provenance, with_provenance
from curate.io.provenance import base_record, fingerprint
from curate.runtime import CPU, Runtime
from curate.score_config import DEFAULT_EPOCHS, ScoreConfig  # noqa: F401  (re-exported)
from curate.scores.base import ScoreContext
from curate.scores.registry import METHODS


def _write_streaming(pool: Path, output: Path, keep: list[str], new: dict[str, pa.Array | LazyColumn], record: dict) -> None:
    """Copy POOL's kept columns batch by batch and append the new columns, each read for the
    batch's rows only (a lazy column from its file): memory stays at one batch.

    Each batch becomes one row group of OUTPUT (``ROW_GROUP_ROWS`` rows)."""
    pf = open_stream(pool)
    cols = {name: as_column(c) for name, c in new.items()}
    schema = pa.schema([pf.schema_arrow.field(c) for c in keep] + [pa.field(n, c.type) for n, c in cols.items()])
    schema = with_provenance(schema.empty_table(), record).schema
    start = 0
    with atomic_path(output) as tmp:
        with pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as writer:
            for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS, columns=keep, use_threads=False):
                n = batch.num_rows
                arrays = batch.columns + [c.arrow(start, start + n) for c in cols.values()]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                start += n


def _check_ids(pool: Path, n: int) -> None:
    """Refuse null or duplicate ids, reading the id column batch by batch.

    Memory: n x 8 bytes (64-bit hashes, sorted in place; freed on return), never the id strings;
    a repeated hash (a duplicate or, rarely, a collision) is settled by a second pass holding
    only the ids whose hash repeats."""
    def batches():
        start = 0
        for batch in open_stream(pool).iter_batches(batch_size=ROW_GROUP_ROWS, columns=["id"], use_threads=False):
            col = batch.column(0)
            # Decoded: a dictionary column's hashes would otherwise be of per-batch codes.
            yield start, col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
            start += batch.num_rows

    h = np.empty(n, dtype=np.uint64)
    for start, col in batches():
        if col.null_count:
            i = start + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(f"{pool}: id is null at row {i}; every row needs an id")
        h[start:start + len(col)] = pl.from_arrow(col).hash(seed=0).to_numpy()
    h.sort()
    repeated = h[1:][h[1:] == h[:-1]]
    del h
    if not len(repeated):
        return
    # The first id (in row order) seen before: the same one a scan of the whole list would name.
    seen: set = set()
    for _, col in batches():
        hit = np.isin(pl.from_arrow(col).hash(seed=0).to_numpy(), repeated)
        for id_ in col.filter(pa.array(hit)).to_pylist():
            if id_ in seen:
                raise InputError(f"{pool}: duplicate id {id_!r}; ids must be unique")
            seen.add(id_)


def context(pool: Path, cfg: ScoreConfig, runtime: Runtime, in_place: bool) -> ScoreContext:
    """Check the pool's columns and ids and make the context every method shares (inside
    ``runtime.activate()``). Nothing n-long is kept: ids, labels and embeddings are read from
    the pool when a method asks (``ctx.id_view`` by range, ``ctx.codes`` once, ``ctx.embeddings``
    streamed; ``ctx.ids`` / ``ctx.X`` load them whole for the methods that need every row).
    """
    pf = open_parquet(pool)
    names = pf.schema_arrow.names
    for col in ("id", "embedding"):
        if col not in names:
            raise InputError(f"{pool}: no {col!r} column; produce the file with `curate embed`")
    n = pf.metadata.num_rows
    if n == 0:
        raise InputError(f"{pool}: the dataset is empty")
    _check_ids(pool, n)
    common = {"seed": cfg.seed, "torch_threads": torch.get_num_threads(),
              "pool": fingerprint(pool) if not in_place else None, "runtime": runtime.to_dict()}
    return ScoreContext(pool=pool, table=None, prov=read_provenance(pool), cfg=cfg, runtime=runtime, common=common, n=n)


def score(pool: str | Path, output: str | Path, cfg: ScoreConfig = ScoreConfig(), overwrite: bool = False,
          runtime: Runtime = CPU) -> dict[str, Any]:
    """Score POOL with ``cfg.methods`` on ``runtime`` and write POOL's columns plus the score columns to OUTPUT."""
    pool, output = as_path(pool), as_path(output)
    in_place = pool.resolve() == output.resolve() if output.exists() else False
    # In place (-o POOL --overwrite) is allowed: POOL is then a curate file, replaced atomically.
    others = tuple(p for p in (cfg.il, cfg.target, cfg.dedup.against) if p)
    check_output(output, overwrite, inputs=others if in_place else (pool, *others))
    # Columns of the methods re-run are replaced; everything else is kept as it was.
    replaced = {c.name for m in cfg.methods for c in METHODS[m].columns}
    with runtime.activate():
        ctx = context(pool, cfg, runtime, in_place)
        new: dict[str, pa.Array | LazyColumn] = {}
        records: dict[str, dict] = {}
        summary: dict[str, Any] = {"output": str(output), "rows": ctx.n, "methods": list(cfg.methods)}
        try:
            # Registry order, not command-line order: the same methods always give the same column order.
            for method in (m for name, m in METHODS.items() if name in cfg.methods):
                cols = method.compute(ctx)
                rec = method.provenance(ctx)
                written = [c.name for c in method.columns if c.name in cols]
                for c in written:
                    records[c] = rec
                new.update(cols)
                summary.update(method.summarise(cols))
            # Written while the context is open: lazy columns read their private files, deleted at close.
            # The spilled matrix is not read any more: gone first, so the disk never holds it and OUTPUT at once.
            ctx.close_embeddings()
            _write_streaming(pool, output, [c for c in open_parquet(pool).schema_arrow.names if c not in replaced], new,
                             _record(ctx.prov, records, replaced))
        finally:
            for c in new.values():
                if isinstance(c, LazyColumn):
                    c.close()
            ctx.close()
    summary["columns"] = list(new)
    return summary


def _record(prov: dict, records: dict[str, dict], replaced: set[str]) -> dict:
    """OUTPUT's footer: POOL's, with the re-run methods' column records replaced and a history entry."""
    scores = {k: v for k, v in (prov.get("scores") or {}).items() if k not in replaced}
    scores.update(records)
    record = dict(prov) if prov else {}
    record["scores"] = compact_scores(scores)
    record.setdefault("history", [])
    record["history"] = record["history"] + [{k: v for k, v in base_record("score").items() if k != "tool"}]
    return record
