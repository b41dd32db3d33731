"""Input datasets: tables (CSV, JSONL, Parquet: a file, a directory or a glob) and image folders.

A source streams its rows as Arrow record batches with two extra columns that every later
step relies on: ``id`` (stable, from ``--id-column`` or derived from the source) and, for
images, ``__path`` (the absolute image path). Derived ids never depend on how the data is
batched or sharded:

- tables: ``<file path relative to the input root>:<0-based row number in that file>``;
- image folders: the image path relative to the root, with ``/`` separators.
"""

from __future__ import annotations

import glob as _glob
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from curate.errors import InputError
from curate.io.provenance import file_sha256

TABLE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ID = "id"
PATH = "__path"


def table_format(path: Path) -> str:
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unknown table format {path.suffix!r}; expected one of .csv, .jsonl, .parquet"
        )
    return fmt


def read_batches(path: Path, fmt: str, columns: list[str] | None = None, batch_rows: int = 4096) -> Iterator[pa.RecordBatch]:
    """Stream one table file as record batches (bounded memory for every format)."""
    try:
        if fmt == "parquet":
            yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)
            return
        if fmt == "csv":
            reader = pa_csv.open_csv(path, convert_options=pa_csv.ConvertOptions(include_columns=columns))
        else:
            reader = pa_json.open_json(path)
        for batch in reader:
            if columns is not None and fmt == "jsonl":
                batch = batch.select(columns)
            yield batch
    except InputError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, KeyError):
            msg = f"missing column {e}"
        raise InputError(f"{path}: could not read as {fmt.upper()} ({msg})") from None


def table_schema(path: Path, fmt: str) -> pa.Schema:
    """The schema of a table file, read from its footer or first block."""
    if fmt == "parquet":
        try:
            return pq.ParquetFile(path).schema_arrow
        except Exception as e:
            raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    for batch in read_batches(path, fmt):
        return batch.schema
    return pa.schema([])


@dataclass(frozen=True)
class TableSource:
    """Sorted table files of one format, ids relative to ``root``."""

    files: tuple[Path, ...]
    root: Path
    fmt: str
    kind: str = field(default="table", init=False)

    def schema(self) -> pa.Schema:
        return table_schema(self.files[0], self.fmt)

    def check_columns(self, columns: list[str]) -> None:
        for f in self.files:
            names = table_schema(f, self.fmt).names
            missing = [c for c in columns if c not in names]
            if missing:
                raise InputError(
                    f"{f}: no column {', '.join(repr(c) for c in missing)}; "
                    f"columns present: {', '.join(names) or '(none)'}"
                )

    def rows(self, columns: list[str], id_column: str | None, image_column: str | None = None,
             batch_rows: int = 4096) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` plus ``id`` (and ``__path`` for an image-path column)."""
        wanted = list(dict.fromkeys(columns + ([id_column] if id_column else [])))
        for f in self.files:
            rel = f.relative_to(self.root).as_posix()
            row0 = 0
            for batch in read_batches(f, self.fmt, wanted, batch_rows):
                n = batch.num_rows
                if id_column:
                    ids = batch.column(id_column)
                    if ids.null_count:
                        raise InputError(f"{f}: id column {id_column!r} has a null value; every row needs an id")
                    ids = ids.cast(pa.string())
                else:
                    ids = pa.array([f"{rel}:{i}" for i in range(row0, row0 + n)], pa.string())
                arrays = [batch.column(c) for c in columns] + [ids]
                names = list(columns) + [ID]
                if image_column:
                    paths = [None if p is None else str((f.parent / p).resolve()) for p in batch.column(image_column).to_pylist()]
                    arrays.append(pa.array(paths, pa.string()))
                    names.append(PATH)
                yield pa.RecordBatch.from_arrays(arrays, names=names)
                row0 += n

    def fingerprint(self) -> list[dict]:
        return [{"path": str(f), "size": f.stat().st_size, "sha256": file_sha256(f)} for f in self.files]


@dataclass(frozen=True)
class ImageFolderSource:
    """An image folder ``root/<class>/<image>``: label = class directory, id = relative path."""

    root: Path
    images: tuple[Path, ...]
    kind: str = field(default="images", init=False)

    def rows(self, columns: list[str], id_column: str | None, image_column: str | None = None,
             batch_rows: int = 4096) -> Iterator[pa.RecordBatch]:
        for start in range(0, len(self.images), batch_rows):
            chunk = self.images[start:start + batch_rows]
            rel = [p.relative_to(self.root).as_posix() for p in chunk]
            yield pa.RecordBatch.from_arrays(
                [pa.array([r.split("/", 1)[0] for r in rel], pa.string()),
                 pa.array(rel, pa.string()),
                 pa.array([str(p) for p in chunk], pa.string())],
                names=["label", ID, PATH],
            )

    def fingerprint(self) -> list[dict]:
        # One combined hash: per-file records would bloat the footer for large folders.
        h = hashlib.sha256()
        size = 0
        for p in self.images:
            size += p.stat().st_size
            h.update(f"{p.relative_to(self.root).as_posix()}\t{file_sha256(p)}\n".encode())
        return [{"path": str(self.root), "files": len(self.images), "size": size, "sha256": h.hexdigest()}]


Source = TableSource | ImageFolderSource


def _image_folder(root: Path) -> ImageFolderSource | None:
    classes = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if not classes:
        return None
    images = tuple(
        p for d in classes for p in sorted(d.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    return ImageFolderSource(root=root.resolve(), images=tuple(p.resolve() for p in images)) if images else None


def open_source(spec: str | Path) -> Source:
    """Resolve INPUT (a table file, a directory of tables or images, or a glob) to a source."""
    spec = str(spec)
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in _glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"{spec}: the pattern matches no file")
        root = Path(_common_dir(files))
    else:
        path = Path(spec)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_file():
            files, root = [path], path.parent
        else:
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TABLE_FORMATS)
            if not files:
                images = _image_folder(path)
                if images is not None:
                    return images
                raise InputError(
                    f"{path}: directory holds no .csv/.jsonl/.parquet files and no image folders "
                    "laid out as <root>/<class>/<image>"
                )
            root = path
    fmts = {table_format(f) for f in files}
    if len(fmts) > 1:
        raise InputError(f"{spec}: mixes table formats ({', '.join(sorted(fmts))}); pass one format at a time")
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f"{f}: file is empty")
    return TableSource(files=tuple(f.resolve() for f in files), root=root.resolve(), fmt=fmts.pop())


def _common_dir(files: list[Path]) -> str:
    import os

    return os.path.commonpath([str(f.resolve().parent) for f in files])
