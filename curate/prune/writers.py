"""Writing the kept records in the source's own format.

JSONL lines and CSV records are copied byte for byte (blank lines dropped, a leading BOM kept);
Parquet rows keep their schema; an image folder becomes a folder of symlinks (or copies). Every
record's id comes from :meth:`curate.io.sources.TableSource.rows`, the very code ``curate embed``
used, so record addressing cannot drift from embedding: the raw records are only zipped with it,
and a count mismatch is an error rather than a silent shift.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import InputError
from curate.io.fs import open_input
from curate.io.id_index import IdIndex
from curate.io.sources import ImageFolderSource, TableSource

BOM = b"\xef\xbb\xbf"
_END = object()


def _ids(source: TableSource, f: Path, id_col: str | None) -> Iterator[pa.Array]:
    """Id batches of one file, derived exactly as embed derived them."""
    one = TableSource(files=(f,), root=source.root, fmt=source.fmt)
    for batch in one.rows([], id_col):
        yield batch.column("id")


def _raw_jsonl(path: Path) -> tuple[bytes, Iterator[bytes]]:
    def records():
        with path.open("rb") as fh:
            first = True
            for line in fh:
                if first and line.startswith(BOM):
                    line = line[len(BOM):]
                first = False
                if line.strip():  # pyarrow's JSON reader skips blank lines too
                    yield line if line.endswith(b"\n") else line + b"\n"

    with path.open("rb") as fh:
        head = BOM if fh.read(3) == BOM else b""
    return head, records()


def _raw_csv(path: Path) -> tuple[bytes, Iterator[bytes]]:
    """The header's raw bytes (BOM included), and the raw bytes of every non-blank record."""
    with path.open("rb") as fh:
        bom = fh.read(3) == BOM
    f = path.open(newline="", encoding="utf-8-sig")
    buf: list[str] = []

    def lines():
        for line in f:
            buf.append(line)
            yield line

    reader = csv.reader(lines())
    next(reader, None)
    head = (BOM if bom else b"") + "".join(buf).encode()
    buf.clear()

    def records():
        try:
            for rec in reader:
                raw = "".join(buf).encode()
                buf.clear()
                if rec:  # a blank line: pyarrow's CSV reader skips it, so it is no record
                    yield raw
        finally:
            f.close()

    return head, records()


# (ids, keep flags) of the scored file, batch by batch in its row order.
ScoredIds = Callable[[], Iterator[tuple[pa.Array, np.ndarray]]]
# The keep flags of one batch of source ids, and how many of them are scored ids.
KeepOf = Callable[[pa.Array], tuple[np.ndarray, int]]


class _Misaligned(Exception):
    """The scored ids are not the source's ids in the source's order."""


class _Aligned:
    """Hands out the scored (id, keep) batches in slices as long as the source's id batches, and
    proves each slice's ids equal the source's: memory is a batch, whatever the rows."""

    def __init__(self, scored: ScoredIds):
        self._batches = scored()
        self._ids, self._keep = pa.array([], pa.string()), np.zeros(0, dtype=bool)

    def _fill(self, m: int) -> None:
        while len(self._ids) < m:
            nxt = next(self._batches, None)
            if nxt is None:
                return
            self._ids = pa.concat_arrays([self._ids, nxt[0]])
            self._keep = np.concatenate([self._keep, nxt[1]])

    def __call__(self, ids: pa.Array) -> tuple[np.ndarray, int]:
        m = len(ids)
        self._fill(m)
        if len(self._ids) < m or (m and not pc.all(pc.equal(ids, self._ids[:m])).as_py()):
            raise _Misaligned
        keep = self._keep[:m]
        self._ids, self._keep = self._ids[m:], self._keep[m:]
        return keep, m

    def exhausted(self) -> bool:
        self._fill(1)
        return len(self._ids) == 0


def write_table_file(source: TableSource, f: Path, id_col: str | None, keep_of: KeepOf, out: Path) -> tuple[int, int]:
    """Write the kept records of table file ``f`` to ``out``; return (records in f, scored ids found)."""
    total = found = 0
    if source.fmt == "parquet":
        pf = pq.ParquetFile(open_input(f))
        writer = pq.ParquetWriter(out, pf.schema_arrow)
        try:
            id_batches = _ids(source, f, id_col)
            for batch in pf.iter_batches(batch_size=4096):
                ids = next(id_batches)
                total += len(ids)
                keep, hit = keep_of(ids)
                found += hit
                writer.write_batch(batch.filter(pa.array(keep)))
        finally:
            writer.close()
        return total, found
    head, records = (_raw_csv if source.fmt == "csv" else _raw_jsonl)(f)
    with open(out, "wb") as fh:
        fh.write(head)
        raw_iter = iter(records)
        for ids in _ids(source, f, id_col):
            total += len(ids)
            keep, hit = keep_of(ids)
            found += hit
            for k in keep.tolist():
                raw = next(raw_iter, _END)
                if raw is _END:
                    raise InputError(f"--source {f}: its records could not be split as embed read them; re-save it as Parquet")
                if k:
                    fh.write(raw)
        if next(raw_iter, _END) is not _END:
            raise InputError(f"--source {f}: its records could not be split as embed read them; re-save it as Parquet")
    return total, found


def write_tables(source: TableSource, single: bool, id_col: str | None, scored: ScoredIds, out: Path) -> None:
    """One file to ``out``, or (directory/glob input) each file to ``out/<path relative to the input>``.

    The scored file of an embedded source lists the source's ids in its order, so records and
    scored rows are compared batch by batch. Any other scored file (rows of it pruned before, say)
    is matched by id: its ids sorted once (``curate.io.id_index``), each source batch looked up."""

    def each_file(keep_of: KeepOf) -> int:
        found = 0
        for f in source.files:
            target = out if single else out / f.relative_to(source.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            found += write_table_file(source, f, id_col, keep_of, target)[1]
        return found

    try:
        aligned = _Aligned(scored)
        each_file(aligned)
        if not aligned.exhausted():
            raise _Misaligned
        return
    except _Misaligned:
        pass
    index = IdIndex(scored(), bool)

    def keep_of(b: pa.Array) -> tuple[np.ndarray, int]:
        found, keep = index.lookup(b)
        return found & keep, int(found.sum())

    found = each_file(keep_of)
    _check_found(source.root if not single else source.files[0], len(index), found)


def write_images(source: ImageFolderSource, scored: ScoredIds, out: Path, copy: bool) -> None:
    """A symlink (or copy) of each kept image; an image folder holds one file per row, so its ids are few."""
    index = IdIndex(scored(), bool)
    rel = pa.array([p.relative_to(source.root).as_posix() for p in source.images], pa.string())
    found, keep = index.lookup(rel)
    _check_found(source.root, len(index), int(found.sum()))
    for rid in sorted(rel.filter(pa.array(found & keep)).to_pylist()):
        src, dst = source.root / rid, out / rid
        dst.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copy2(src, dst)
        else:
            os.symlink(src, dst)


def _check_found(where: Path, n_scored: int, found: int) -> None:
    if found != n_scored:
        raise InputError(f"--source {where}: {n_scored - found} id(s) of the scored file are not in it; "
                         "pass the input that was embedded, exactly as it was given to `curate embed`")


_CSV_SPECIAL = re.compile(r'[,"\n\r]')
_JSON_SPECIAL = re.compile(r'[\x00-\x1f"\\]')


def _csv_field(v: str) -> str:
    """A field as polars' write_csv writes it: quoted when empty or holding a comma, quote or line break."""
    return '"' + v.replace('"', '""') + '"' if not v or _CSV_SPECIAL.search(v) else v


def _json_string(v: str) -> str:
    """A string as polars' write_ndjson writes it (UTF-8 kept, quotes, backslashes and controls escaped)."""
    return json.dumps(v, ensure_ascii=False) if _JSON_SPECIAL.search(v) else '"' + v + '"'


def write_dropped(parts: Iterable[tuple[pa.Array, pa.Array]], path: Path, target_name: str) -> None:
    """Removed ids and the condition that removed each (string arrays, batch by batch in file order),
    as CSV, JSONL or Parquet by ``target_name``'s suffix.

    CSV and JSONL are the bytes of polars' write_csv / write_ndjson of the whole list, written
    here line by line (polars' allocator would keep every freed batch for seconds); Parquet goes
    through pyarrow's incremental writer (the rows and column types polars' write would give)."""
    suffix = Path(target_name).suffix.lower()
    if suffix == ".parquet":
        schema = pa.schema([("id", pa.large_string()), ("removed_by", pa.large_string())])
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for ids, reasons in parts:
                writer.write_table(pa.table([ids, reasons], names=["id", "removed_by"]).cast(schema))
        return
    jsonl = suffix in (".jsonl", ".ndjson")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if not jsonl:
            fh.write("id,removed_by\n")
        for ids, reasons in parts:
            rs = reasons.to_pylist()
            if jsonl:
                fh.write("".join(f'{{"id":{_json_string(i)},"removed_by":{_json_string(r)}}}\n' for i, r in zip(ids.to_pylist(), rs)))
            else:
                fh.write("".join(f"{_csv_field(i)},{_csv_field(r)}\n" for i, r in zip(ids.to_pylist(), rs)))
