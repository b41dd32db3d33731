"""Parquet reading and writing through pyarrow, with provenance attached to the footer.

polars drops key-value metadata on a read-then-write, so every write goes through here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import InputError
from curate.io.atomic import atomic_path
from curate.io.fs import as_path, missing, open_input
from curate.io.provenance import METADATA_KEY

# Fixed writer settings: the same table must always give the same bytes.
WRITE_OPTIONS = dict(compression="zstd", use_dictionary=True, write_statistics=True)
# Rows per row group of a whole-table write and of a streamed one (16384 x 384-d float32 = 25 MB):
# a reader that reads whole column chunks (open_parquet's) holds one row group at a time.
ROW_GROUP_ROWS = 16384


def with_provenance(table: pa.Table, record: dict[str, Any]) -> pa.Table:
    """Return ``table`` with ``record`` stored as JSON under the ``curate`` metadata key."""
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(record, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(meta)


def write_table(table: pa.Table, path: str | Path, record: dict[str, Any] | None = None) -> Path:
    """Write ``table`` atomically (temp file + rename), with provenance if given; ``path`` may be a URI."""
    if record is not None:
        table = with_provenance(table, record)
    path = as_path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **WRITE_OPTIONS)
    return path


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The ``curate`` record of a Parquet file ({} if it has none)."""
    meta = open_parquet(path).schema_arrow.metadata or {}
    raw = meta.get(METADATA_KEY)
    record = json.loads(raw) if raw else {}
    # A method's record is stored once, under its first column; its other columns point to it
    # (GIO's trajectories would otherwise be written three times). Readers see every column's record.
    scores = record.get("scores")
    if isinstance(scores, dict):
        for name, rec in list(scores.items()):
            if isinstance(rec, dict) and set(rec) == {"method", "same_as"} and isinstance(scores.get(rec["same_as"]), dict):
                scores[name] = scores[rec["same_as"]]
    return record


def compact_scores(scores: dict[str, Any]) -> dict[str, Any]:
    """Each distinct record once: a column whose record equals an earlier column's points to it.

    The inverse of what :func:`read_provenance` resolves; GIO's record (its KL trajectories) is
    shared by three columns and would otherwise be stored three times.
    """
    out: dict[str, Any] = {}
    firsts: list[str] = []
    for name, rec in scores.items():
        same = next((f for f in firsts if scores[f] is rec or scores[f] == rec), None) if isinstance(rec, dict) else None
        if same is None:
            out[name] = rec
            if isinstance(rec, dict):
                firsts.append(name)
        else:
            out[name] = {"method": rec.get("method"), "same_as": same}
    return out


def open_parquet(path: str | Path) -> pq.ParquetFile:
    """Open a Parquet file (a path or a URI), turning a missing or corrupt file into a one-line InputError."""
    p = as_path(path)
    if not p.exists():
        raise InputError(f"{p}: {missing(p, 'no such file')}")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a Parquet file")
    try:
        return pq.ParquetFile(open_input(p))
    except Exception as e:  # pyarrow raises several types for a damaged footer
        raise InputError(f"{p}: not a readable Parquet file ({type(e).__name__}: {e})") from None


def open_stream(path: str | Path) -> pq.ParquetFile:
    """:func:`open_parquet` for reading batch by batch with memory bounded by the batch, not by
    the row group: no pre-buffering of whole column chunks, 1 MiB read buffers."""
    open_parquet(path)  # the same one-line errors
    return pq.ParquetFile(open_input(as_path(path)), pre_buffer=False, buffer_size=1 << 20)


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a whole Parquet file (or some columns), with clear errors."""
    pf = open_parquet(path)
    if columns is not None:
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(missing)}; "
                f"columns present: {', '.join(pf.schema_arrow.names)}"
            )
    try:
        return pf.read(columns=columns)
    except Exception as e:
        raise InputError(f"{path}: could not read ({type(e).__name__}: {e})") from None


def embedding_array(column: pa.ChunkedArray | pa.Array, where: str = "embedding") -> np.ndarray:
    """A ``fixed_size_list<float>`` / ``list<float>`` column as a float32 (n, d) matrix.

    Raises InputError for nulls, ragged rows or non-finite values, naming the first bad row.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if column.null_count:
        bad = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{where}: null embedding at row {bad}; re-run `curate embed` or drop the row")
    if pa.types.is_fixed_size_list(column.type):
        d = column.type.list_size
        flat = column.flatten()
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        if n and (lengths != lengths[0]).any():
            bad = int(np.flatnonzero(lengths != lengths[0])[0])
            raise InputError(f"{where}: row {bad} has {lengths[bad]} dimensions, row 0 has {lengths[0]}")
        d = int(lengths[0]) if n else 0
        flat = column.flatten()
    else:
        raise InputError(f"{where}: expected a list of floats, got {column.type}")
    # A writable copy: torch.from_numpy on a read-only Arrow buffer is undefined behaviour.
    mat = np.array(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, d)
    finite = np.isfinite(mat).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise InputError(f"{where}: non-finite value (NaN or inf) in the embedding at row {bad}")
    return mat


def iter_embeddings(path: str | Path, batch_rows: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, float32 (b, d) block)`` of the ``embedding`` column, batch by batch.

    Each batch is validated like :func:`embedding_array`, with row numbers counted over the
    whole file; every block has the first block's dimension. Memory: one batch.
    """
    pf = open_stream(path)
    if "embedding" not in pf.schema_arrow.names:
        raise InputError(f"{path}: no 'embedding' column; produce the file with `curate embed`")
    start, d = 0, None
    # One thread: a threaded reader decodes ahead and holds more than one batch.
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["embedding"], use_threads=False):
        try:
            block = embedding_array(batch.column(0), where=f"{path}: embedding")
        except InputError as e:
            # Re-number the row from the batch to the file.
            msg = str(e)
            m = re.search(r"row (\d+)", msg)
            if m:
                msg = msg.replace(m.group(0), f"row {start + int(m.group(1))}", 1)
            raise InputError(msg) from None
        if d is None:
            d = block.shape[1]
        elif block.shape[1] != d:
            raise InputError(f"{path}: embedding at row {start} has {block.shape[1]} dimensions, row 0 has {d}")
        yield start, block
        start += len(block)


def read_embeddings(path: str | Path, batch_rows: int = 65536) -> np.ndarray:
    """The ``embedding`` column of a Parquet file as a float32 (n, d) matrix, read batch by batch.

    Only the result is held in memory (never the whole Arrow column as well); see
    :func:`iter_embeddings` for the checks. ``curate.io.matrix.Embeddings`` reads it without
    holding it at all.
    """
    n = open_parquet(path).metadata.num_rows
    out: np.ndarray | None = None
    for start, block in iter_embeddings(path, batch_rows):
        if out is None:
            out = np.empty((n, block.shape[1]), dtype=np.float32)
        out[start:start + len(block)] = block
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def embedding_column(mat: np.ndarray) -> pa.FixedSizeListArray:
    """A float32 (n, d) matrix as a ``fixed_size_list<float32>[d]`` array (no copy when contiguous)."""
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1)), mat.shape[1])
