"""Writing the kept records in the source's own format.

JSONL lines and CSV records are copied byte for byte; Parquet rows keep their schema; an image
folder becomes a folder of symlinks (or copies). Ids are derived exactly as ``curate embed``
derived them (recorded in the scored file's provenance under ``source.id_rule``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import InputError
from curate.io.atomic import atomic_dir, atomic_path
from curate.io.sources import IMAGE_SUFFIXES, TABLE_FORMATS


def _id_rule(prov: dict[str, Any], source: Path) -> tuple[str | None, str]:
    """(id column or None, prefix for derived ``<file>:<row>`` ids)."""
    src = prov.get("source") or {}
    rule = src.get("id_rule", "")
    if rule.startswith("column "):
        return rule[len("column "):], ""
    root = src.get("root")
    try:
        rel = source.resolve().relative_to(Path(root)).as_posix() if root else source.name
    except ValueError:
        rel = source.name
    return None, rel


def _records_jsonl(path: Path, id_col: str | None, rel: str) -> Iterator[tuple[str, bytes]]:
    with open(path, "rb") as f:
        row = 0
        for line in f:
            if not line.strip():
                continue
            if id_col:
                try:
                    value = json.loads(line)[id_col]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise InputError(f"{path}: line {row + 1} has no {id_col!r} field; is this the file that was embedded?") from None
                yield str(value), line
            else:
                yield f"{rel}:{row}", line
            row += 1


def _records_csv(path: Path, id_col: str | None, rel: str) -> tuple[bytes, Iterator[tuple[str, bytes]]]:
    """The header's raw text, and (id, raw record text) for every record, quoted newlines included."""
    f = open(path, newline="", encoding="utf-8")
    buf: list[str] = []

    def lines():
        for line in f:
            buf.append(line)
            yield line

    reader = csv.reader(lines())
    header = next(reader)
    head = "".join(buf).encode()
    buf.clear()
    col = header.index(id_col) if id_col and id_col in header else None
    if id_col and col is None:
        raise InputError(f"{path}: no column {id_col!r}; is this the file that was embedded?")

    def records():
        try:
            for row, rec in enumerate(reader):
                raw = "".join(buf).encode()
                buf.clear()
                yield (rec[col] if col is not None else f"{rel}:{row}"), raw
        finally:
            f.close()

    return head, records()


def write_source(source: Path, output: Path, keep: set[str], scored_ids: set[str], prov: dict[str, Any], copy: bool = False) -> None:
    """Write the records of ``source`` whose ids are in ``keep`` to ``output``, in source's format."""
    if not source.exists():
        raise InputError(f"--source {source}: no such file or directory")
    if source.is_dir():
        return _write_images(source, output, keep, scored_ids, copy)
    fmt = TABLE_FORMATS.get(source.suffix.lower())
    if fmt is None:
        raise InputError(f"--source {source}: unknown format {source.suffix!r}; expected .jsonl, .csv, .parquet or an image folder")
    if output.suffix.lower() != source.suffix.lower():
        raise InputError(f"-o {output}: --source is {fmt.upper()}, so the output must end in {source.suffix}")
    id_col, rel = _id_rule(prov, source)
    seen: set[str] = set()
    with atomic_path(output) as tmp:
        if fmt == "parquet":
            table = pq.read_table(source)
            ids = (table.column(id_col).cast(pa.string()).to_pylist() if id_col else [f"{rel}:{i}" for i in range(len(table))])
            seen = set(ids)
            _check_ids(source, scored_ids, seen)
            pq.write_table(table.filter(pa.array([i in keep for i in ids])), tmp)
        else:
            with open(tmp, "wb") as out:
                if fmt == "csv":
                    head, records = _records_csv(source, id_col, rel)
                    out.write(head)
                else:
                    records = _records_jsonl(source, id_col, rel)
                for rid, raw in records:
                    seen.add(rid)
                    if rid in keep:
                        out.write(raw)
            _check_ids(source, scored_ids, seen)


def _check_ids(source: Path, scored: set[str], seen: set[str]) -> None:
    missing = scored - seen
    if missing:
        example = sorted(missing)[:3]
        raise InputError(f"--source {source}: {len(missing)} id(s) of the scored file are not in it (e.g. {', '.join(example)}); "
                         "pass the file that was embedded")


def _write_images(source: Path, output: Path, keep: set[str], scored_ids: set[str], copy: bool) -> None:
    seen = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    _check_ids(source, scored_ids, seen)
    with atomic_dir(output) as tmp:
        for rid in sorted(keep):
            src, dst = source / rid, tmp / rid
            dst.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                shutil.copy2(src, dst)
            else:
                os.symlink(src.resolve(), dst)


def write_frame(df: pl.DataFrame, path: Path) -> None:
    """A small table (e.g. --dropped) as CSV, JSONL or Parquet by its suffix."""
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            df.write_parquet(tmp)
        elif suffix in (".jsonl", ".ndjson"):
            df.write_ndjson(tmp)
        else:
            df.write_csv(tmp)
