"""Columns of n rows read by row range, so that an output column never has to be held whole.

A score method returns, per output column, either a plain ``pa.Array`` (methods that hold every
row anyway) or a :class:`LazyColumn`: rows ``[start, stop)`` on request, as numpy
(:meth:`LazyColumn.read`) or Arrow (:meth:`LazyColumn.arrow`). Three kinds:

- :class:`ArrayColumn`: an array in memory (what a plain ``pa.Array`` becomes);
- :class:`DiskColumn`: a private file of fixed-width values, appended chunk by chunk with plain
  file writes (not a writable memory map: dirty mapped pages would count in the resident set,
  page-cache pages of a written file do not) and read back by ``pread``; deleted on
  :meth:`DiskColumn.close` or when the object is collected;
- :class:`MapColumn`: an elementwise function of other columns, computed per range
  (``rho = target_loss - il_loss``).

:class:`ParquetColumn` reads one column of a Parquet file by row range (the pool's ids: named in
messages only, never held).
"""

from __future__ import annotations

import os
import weakref
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from curate.io import scratch


class LazyColumn(ABC):
    """``n`` values of Arrow type ``type``, readable by row range."""

    n: int
    type: pa.DataType

    @abstractmethod
    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, min(stop, n))`` as a numpy array (nulls as NaN for floats)."""

    def arrow(self, start: int, stop: int) -> pa.Array:
        """Rows ``[start, stop)`` as an Arrow array of ``type``."""
        return pa.array(self.read(start, stop), type=self.type)

    def __len__(self) -> int:
        return self.n

    def batches(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` of consecutive ranges of ``size`` rows, in order."""
        for s in range(0, self.n, size):
            yield s, self.read(s, s + size)

    def to_numpy(self) -> np.ndarray:
        """Every row in memory (n values): for tests and small columns."""
        return self.read(0, self.n)

    def close(self) -> None:
        """Release what the column holds (a file); reading afterwards is an error."""


class ArrayColumn(LazyColumn):
    """A column already in memory: a numpy array or an Arrow (chunked) array."""

    def __init__(self, values: np.ndarray | pa.Array | pa.ChunkedArray):
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        self.values = values if isinstance(values, pa.Array) else pa.array(values)
        self.n, self.type = len(self.values), self.values.type

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.values.slice(start, max(0, stop - start)).to_numpy(zero_copy_only=False))

    def arrow(self, start: int, stop: int) -> pa.Array:
        return self.values.slice(start, max(0, stop - start))


class DiskColumn(LazyColumn):
    """Fixed-width values in a private temporary file, written in row order by :meth:`append`.

    Resident memory: none between calls (the written pages are page cache, not the process's).
    """

    def __init__(self, dtype=np.float64, dir: str | Path | None = None):
        self.dtype = np.dtype(dtype)
        self.type = pa.from_numpy_dtype(self.dtype)
        # mode 0600: private; named with the pid, so a later run removes it after a kill -9
        fd, self.path = scratch.make_file("column", dir)
        self._file = os.fdopen(fd, "wb")
        self.n = 0
        self._cleanup = weakref.finalize(self, _remove, self._file, str(self.path))

    def append(self, values: np.ndarray) -> None:
        """Write ``values`` (cast to the column's dtype) as the next rows."""
        v = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1)
        self._file.write(memoryview(v).cast("B"))
        self.n += v.size

    def read(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.n)
        if stop <= start:
            return np.empty(0, self.dtype)
        self._file.flush()
        count = stop - start
        out = np.fromfile(self.path, dtype=self.dtype, count=count, offset=start * self.dtype.itemsize)
        if out.size != count:
            raise OSError(f"{self.path}: expected {count} values at row {start}, read {out.size}")
        return out

    def close(self) -> None:
        self._cleanup()


def _remove(file, path: str) -> None:
    file.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class MapColumn(LazyColumn):
    """``fn(*(c.read(s, e) for c in inputs))`` for each range: an elementwise function of columns."""

    def __init__(self, fn: Callable[..., np.ndarray], *inputs: LazyColumn, type: pa.DataType = pa.float64()):
        if len({c.n for c in inputs}) != 1:
            raise ValueError(f"columns of different lengths {[c.n for c in inputs]}")
        self.fn, self.inputs, self.n, self.type = fn, inputs, inputs[0].n, type

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.fn(*(c.read(start, stop) for c in self.inputs))


def as_column(values: Any) -> LazyColumn:
    """``values`` as a :class:`LazyColumn` (a lazy column is returned as it is)."""
    return values if isinstance(values, LazyColumn) else ArrayColumn(values)


class ParquetColumn:
    """Rows ``[start, stop)`` of one column of a Parquet file, read on demand (never held whole).

    Indexing gives one value (Python); slicing gives another view, read only when asked
    (``to_pylist`` / ``arrow``): a drop-in for an Arrow array where only a few rows are read.
    """

    def __init__(self, pf, name: str, start: int = 0, stop: int | None = None, _offsets: np.ndarray | None = None):
        self.pf, self.name = pf, name
        self.index = pf.schema_arrow.names.index(name)
        # Row-group boundaries: a range reads only the row groups it overlaps.
        if _offsets is None:
            meta = pf.metadata
            _offsets = np.concatenate([[0], np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])])
        self._offsets = _offsets
        total = int(_offsets[-1])
        self.start, self.stop = start, total if stop is None else min(stop, total)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def arrow(self) -> pa.Array:
        """The view's values as one Arrow array."""
        if len(self) == 0:
            return pa.array([], type=self.pf.schema_arrow.field(self.name).type)
        first = int(np.searchsorted(self._offsets, self.start, side="right") - 1)
        last = int(np.searchsorted(self._offsets, self.stop, side="left"))
        t = self.pf.read_row_groups(list(range(first, last)), columns=[self.name], use_threads=False)
        col = t.column(0).slice(self.start - int(self._offsets[first]), len(self))
        return col.combine_chunks()

    def to_pylist(self) -> list:
        return self.arrow().to_pylist()

    def __getitem__(self, key):
        if isinstance(key, slice):
            s, e, step = key.indices(len(self))
            assert step == 1, "only contiguous views"
            return ParquetColumn(self.pf, self.name, self.start + s, self.start + max(s, e), self._offsets)
        i = int(key)
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        return self[i:i + 1].to_pylist()[0]
