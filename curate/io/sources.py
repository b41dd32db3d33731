"""Input datasets: tables (CSV, JSONL, Parquet: a file, a directory or a glob) and image folders.

A source streams its rows as Arrow record batches with two extra columns that every later
step relies on: ``id`` (stable, from ``--id-column`` or derived from the source) and, for
images, ``__path`` (the absolute image path). Derived ids never depend on how the data is
batched or sharded:

- tables: ``<file path relative to the input root>:<0-based row number in that file>``;
- image folders: the image path relative to the root, with ``/`` separators.

Ids from ``--id-column`` are strings as written: a CSV id is read as text, never type-inferred
(``007`` stays ``007``); a JSON string id is used as is and a JSON integer id becomes its decimal
text (``7`` -> ``"7"``); other JSON types (floats, booleans, objects) are refused. A null or empty
id is an error naming the file and row.

INPUT may be a URI (``s3://bucket/dir/train.jsonl``, a prefix, or a glob on the key): files are
then :class:`curate.io.fs.RemotePath` objects and ids are relative to the prefix exactly as for a
local folder, so the same layout gives the same ids. Image folders and image-path columns are
local only.
"""

from __future__ import annotations

import glob as _glob
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from curate.errors import InputError
from curate.io.fs import RemotePath, as_path, is_uri, missing, open_input
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


def check_utf8(path: Path, chunk: int = 1 << 20) -> None:
    """InputError unless a text table file decodes as UTF-8 (streamed; a BOM is allowed)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with as_path(path).open("rb") as f:
        while True:
            block = f.read(chunk)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{path}: not valid UTF-8 text (first bad byte at offset {offset + e.start}); "
                    "re-save the file as UTF-8"
                ) from None
            if not block:
                return
            offset += len(block)


def read_batches(path: Path, fmt: str, columns: list[str] | None = None, batch_rows: int = 4096,
                 text_columns: tuple[str, ...] = ()) -> Iterator[pa.RecordBatch]:
    """Stream one table file as record batches (bounded memory for every format).

    ``text_columns`` (CSV only) are read as strings, never type-inferred (ids: ``007`` stays ``007``).
    """
    try:
        if fmt == "parquet":
            yield from pq.ParquetFile(open_input(path)).iter_batches(batch_size=batch_rows, columns=columns)
            return
        if fmt == "csv":
            convert = pa_csv.ConvertOptions(include_columns=columns,
                                            column_types={c: pa.string() for c in text_columns})
            reader = pa_csv.open_csv(open_input(path), convert_options=convert)
        else:
            # No read-ahead threads: their decoded blocks made the peak grow with the file (reading a
            # JSONL alone: ~18 bytes a row with them, none without); no step is bound by this reader.
            reader = pa_json.open_json(open_input(path), read_options=pa_json.ReadOptions(use_threads=False))
        for batch in reader:
            if columns is not None and fmt == "jsonl":
                batch = batch.select(columns)
            yield batch
    except InputError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, KeyError) as e:
        raise _read_error(path, fmt, e) from None


def _read_error(path: Path, fmt: str, e: Exception) -> InputError:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, KeyError):
        msg = f"missing column {e}"
    hint = "; give every value of a column one JSON type (ids: write them all as strings)" if "changed from" in msg else ""
    return InputError(f"{path}: could not read as {fmt.upper()} ({msg}){hint}")


def table_schema(path: Path, fmt: str) -> pa.Schema:
    """The schema of a table file, read from its footer or first block."""
    if fmt == "parquet":
        try:
            return pq.ParquetFile(open_input(path)).schema_arrow
        except Exception as e:
            raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    try:
        # The reader knows the header before any row: a header-only CSV still has its columns.
        if fmt == "csv":
            return pa_csv.open_csv(open_input(path)).schema
        return pa_json.open_json(open_input(path)).schema
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
        raise _read_error(path, fmt, e) from None


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
             batch_rows: int = 4096, segments: tuple[tuple[int, int, int], ...] | None = None,
             allow_outside: bool = False) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` plus ``id`` (and ``__path`` for an image-path column).

        ``segments``: ``(file index, first row, end row)`` ranges to read (default: every row of
        every file), so a shard task reads only its own rows. Image paths are resolved against the
        table's directory and must stay inside it unless ``allow_outside``.
        """
        wanted = list(dict.fromkeys(columns + ([id_column] if id_column else [])))
        if segments is None:
            segments = tuple((k, 0, -1) for k in range(len(self.files)))
        for k, start, stop in segments:
            f = self.files[k]
            rel = f.relative_to(self.root).as_posix()
            row0 = 0
            for batch in read_batches(f, self.fmt, wanted, batch_rows, (id_column,) if id_column else ()):
                n = batch.num_rows
                lo, hi = max(start - row0, 0), n if stop < 0 else min(stop - row0, n)
                if lo >= hi:
                    row0 += n
                    if stop >= 0 and row0 >= stop:
                        break
                    continue
                batch = batch.slice(lo, hi - lo)
                first = row0 + lo
                ids = self._ids(batch, f, rel, first, id_column)
                arrays = [batch.column(c) for c in columns] + [ids]
                names = list(columns) + [ID]
                if image_column:
                    paths = [self._image_path(f, first + i, p, image_column, allow_outside)
                             for i, p in enumerate(batch.column(image_column).to_pylist())]
                    arrays.append(pa.array(paths, pa.string()))
                    names.append(PATH)
                yield pa.RecordBatch.from_arrays(arrays, names=names)
                row0 += n
                if stop >= 0 and row0 >= stop:
                    break

    @staticmethod
    def _ids(batch: pa.RecordBatch, f: Path, rel: str, first: int, id_column: str | None) -> pa.Array:
        if not id_column:
            return pa.array([f"{rel}:{i}" for i in range(first, first + batch.num_rows)], pa.string())
        ids = batch.column(id_column)
        if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)
                or pa.types.is_integer(ids.type) or pa.types.is_null(ids.type)):
            raise InputError(
                f"{f}: id column {id_column!r} holds {ids.type} values; ids must be strings or integers"
            )
        ids = ids.cast(pa.string())
        bad = pc.or_kleene(ids.is_null(), pc.equal(ids, "")).fill_null(True)
        if pc.any(bad).as_py():
            row = first + int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
            raise InputError(f"{f}: row {row}: id column {id_column!r} is empty or null; every row needs an id")
        return ids

    def _image_path(self, f: Path, row: int, value, column: str, allow_outside: bool) -> str | None:
        if value is None:
            return None
        if isinstance(f, RemotePath):
            raise InputError(f"{f}: --image-column reads images from a local disk; copy the table and its images "
                             "locally (image tables on object storage are not supported)")
        base = f.parent.resolve()
        path = (base / value).resolve()
        if not allow_outside and (Path(value).is_absolute() or not path.is_relative_to(base)):
            raise InputError(
                f"{f}: row {row}: image path {value!r} in column {column!r} is outside the table's "
                f"directory {base}; pass --allow-outside-paths if you trust this table"
            )
        return str(path)

    def fingerprint(self) -> list[dict]:
        return [{"path": str(f), "size": f.stat().st_size, "sha256": file_sha256(f)} for f in self.files]


@dataclass(frozen=True)
class ImageFolderSource:
    """An image folder ``root/<class>/<image>``: label = class directory, id = relative path."""

    root: Path
    images: tuple[Path, ...]
    kind: str = field(default="images", init=False)

    def rows(self, columns: list[str], id_column: str | None, image_column: str | None = None,
             batch_rows: int = 4096, segments: tuple[tuple[int, int, int], ...] | None = None,
             allow_outside: bool = False) -> Iterator[pa.RecordBatch]:
        """Stream ``label``, ``id``, ``__path``; ``segments`` as for tables (file index 0 = the folder)."""
        lo, hi = (0, len(self.images)) if not segments else (segments[0][1], segments[-1][2])
        hi = len(self.images) if hi < 0 else hi
        for start in range(lo, hi, batch_rows):
            chunk = self.images[start:min(start + batch_rows, hi)]
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
    """Resolve INPUT (a table file, a directory of tables or images, or a glob; a path or a URI) to a source."""
    spec = str(spec)
    if is_uri(spec):
        return _remote_source(spec)
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
    return _table_source(spec, files, root.resolve(), resolve=True)


def _common_dir(files: list[Path]) -> str:
    import os

    return os.path.commonpath([str(f.resolve().parent) for f in files])


def _remote_source(spec: str) -> TableSource:
    """:func:`open_source` for a URI: an object, a prefix of table objects, or a glob on the key."""
    key = spec.split("://", 1)[1]
    wild = next((i for i, ch in enumerate(key) if ch in "*?["), None)
    if wild is not None:
        cut = key.rfind("/", 0, wild)
        if cut < 0:
            raise InputError(f"{spec}: a pattern may not cover the bucket name; put the wildcards in the key")
        base = as_path(spec[:len(spec) - len(key) + cut])
        files = base.glob(key[cut + 1:])
        if not files:
            raise InputError(f"{spec}: the pattern matches no object")
        root = _common_prefix(files)
    else:
        path = as_path(spec)
        if path.is_file():
            files, root = [path], path.parent
        elif path.is_dir():
            files = [f for f in path.files() if f.suffix.lower() in TABLE_FORMATS]
            if not files:
                raise InputError(f"{path}: holds no .csv/.jsonl/.parquet objects (image folders on object storage "
                                 "are not supported; copy them locally)")
            root = path
        else:
            raise InputError(f"{path}: {missing(path)}")
    return _table_source(spec, files, root)


def _common_prefix(files: list[RemotePath]) -> RemotePath:
    root = files[0].parent
    while not all(f.is_relative_to(root) for f in files):
        root = root.parent
    return root


def _table_source(spec, files, root, resolve: bool = False) -> "TableSource":
    """The checks every table input gets, local or remote: one format, no empty file, UTF-8 text."""
    fmts = {table_format(f) for f in files}
    if len(fmts) > 1:
        raise InputError(f"{spec}: mixes table formats ({', '.join(sorted(fmts))}); pass one format at a time")
    fmt = fmts.pop()
    for f in files:
        if f.stat().st_size == 0:
            raise InputError(f"{f}: file is empty")
        if fmt != "parquet":
            check_utf8(f)
    return TableSource(files=tuple(f.resolve() for f in files) if resolve else tuple(files), root=root, fmt=fmt)
