"""The pool's embeddings as a float32 matrix on disk, so that n never has to fit in memory.

``score`` spills the Parquet ``embedding`` column once, batch by batch, into a raw row-major
float32 file in a private temporary directory (``$TMPDIR``), then reads rows from it:

- in order, by row range (:class:`MatrixRows`, a picklable description an engine can ship:
  the reader gets exactly its rows with one ``pread``, into ordinary memory);
- at random, by index array (:meth:`Embeddings.take`), for training batches in a shuffled order.
  A file of at most ``map_budget`` bytes is memory-mapped whole and indexed. A larger one is
  read in file order, in one of two ways chosen by the gather's density (rows per 2 MiB of file):
  - dense (at least ``DENSE_ROWS`` rows per 2 MiB on average): through a memory map, in slices
    of ``map_budget / 2 MiB`` folios, the slice's pages dropped after each (``MADV_DONTNEED`` over
    its byte range: the page cache keeps them, the resident set does not). The kernel maps a
    whole page-cache folio (up to 2 MiB) around each row it faults in, which many rows then share.
  - sparse: one ``pread`` per row into the result; nothing of the file is mapped. At about one row
    per folio, mapping and unmapping a folio per row costs more than the read, and pages that were
    only mapped and unmapped look unused to the kernel's page reclaim, so under page-cache pressure
    (a 15 GB matrix beside a 15 GB pool) they are evicted first and faulted back from disk.
  Resident file pages stay under ``map_budget`` whatever n is. The budget is 512 MiB unless
  ``CURATE_MAP_BUDGET`` (bytes, at least 2 MiB) says otherwise.

Why a raw matrix rather than Parquet row groups: a shuffled batch touches rows all over the
file, and a Parquet row group must be decompressed whole to read one row of it
(``benchmarks/bench_scale.py --access`` measures both).
"""

from __future__ import annotations

import mmap
import os
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.errors import InputError
from curate.io import scratch
from curate.io.parquet import iter_embeddings

MAP_BUDGET = 512 * 2**20  # bytes of the file mapped at once, at most (see the module docstring)
FOLIO = 2 * 2**20  # the most one faulting row can map
# Rows per FOLIO of file, on average, from which a gather goes through the map rather than row by
# row. Training steps at 10M x 384 (16,384-row gathers, 2.2 rows per 2 MiB): pread 9.3 ms a step,
# the map 9.0 with the file freshly cached and 15.3 after other files had passed through the page
# cache; at 1M (22 rows per 2 MiB) the map 7.3, pread 8.8.
DENSE_ROWS = 8


def map_budget() -> int:
    """``CURATE_MAP_BUDGET`` (bytes, 2 MiB to 1 TiB) or :data:`MAP_BUDGET`."""
    raw = os.environ.get("CURATE_MAP_BUDGET")
    if raw is None:
        return MAP_BUDGET
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not FOLIO <= value <= 2**40:
        raise InputError(f"CURATE_MAP_BUDGET={raw}: expected a whole number of bytes in [{FOLIO}, {2**40}]")
    return value


@dataclass(frozen=True)
class MatrixRows:
    """Rows ``[start, stop)`` of a float32 (n, d) matrix file: picklable, read on demand."""

    path: str
    d: int
    start: int
    stop: int

    def read(self) -> np.ndarray:
        """The rows as a new, writable float32 (stop - start, d) array."""
        count = (self.stop - self.start) * self.d
        out = np.fromfile(self.path, dtype=np.float32, count=count, offset=self.start * self.d * 4)
        if out.size != count:
            raise OSError(f"{self.path}: expected {count} floats at row {self.start}, read {out.size}")
        return out.reshape(-1, self.d)

    def __len__(self) -> int:
        return self.stop - self.start


class Embeddings:
    """A validated float32 (n, d) matrix in a private file; :meth:`close` deletes it.

    Build with :meth:`from_parquet`. Resident memory: one Parquet batch while building, then
    the rows of the current request (and their mapped pages, see the module docstring).
    """

    def __init__(self, path: Path, n: int, d: int, map_budget: int | None = None):
        self.path, self.n, self.d = Path(path), n, d
        # Deleted at close, at garbage collection, or at interpreter exit, whichever comes first.
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.path.parent), True)
        self.map_budget = map_budget if map_budget is not None else globals()["map_budget"]()
        self._map: mmap.mmap | None = None
        self._view: np.ndarray | None = None
        self._fd: int | None = None

    @classmethod
    def from_parquet(cls, path: str | Path, batch_rows: int = 65536, map_budget: int | None = None) -> "Embeddings":
        """Spill ``path``'s embedding column (validated as ``read_embeddings`` does) to a temp file."""
        budget = map_budget if map_budget is not None else globals()["map_budget"]()  # a bad value: before any work
        tmp = scratch.make_dir("embeddings")  # a kill -9 leftover is removed by a later run
        file = tmp / "embeddings.f32"
        n = d = 0
        try:
            with open(file, "wb") as f:
                for _, block in iter_embeddings(path, batch_rows):
                    d = block.shape[1]
                    n += len(block)
                    f.write(np.ascontiguousarray(block).tobytes())
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(file, n, d, budget)

    @property
    def scratch(self) -> Path:
        """The private directory (for other per-run scratch files, deleted with it)."""
        return self.path.parent

    def rows(self, start: int, stop: int) -> MatrixRows:
        return MatrixRows(str(self.path), self.d, start, min(stop, self.n))

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any integer array shape S) as a new float32 array of shape S + (d,)."""
        if self._view is None:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.n and self.d else None
            self._view = (np.frombuffer(self._map, dtype=np.float32).reshape(self.n, self.d) if self._map is not None
                          else np.zeros((self.n, self.d), np.float32))
        if self._map is None or self.n * self.d * 4 <= self.map_budget:
            return self._view[idx]
        flat = np.asarray(idx).reshape(-1)
        flat = np.where(flat < 0, flat + self.n, flat)  # numpy's meaning, before folios are counted
        out = np.empty((flat.size, self.d), dtype=np.float32)
        if flat.size == 0:
            return out.reshape(*np.shape(idx), self.d)
        order = np.argsort(flat, kind="stable")
        rows = flat[order]
        if rows[0] < 0 or rows[-1] >= self.n:
            raise IndexError(f"row index {rows[0] - self.n if rows[0] < 0 else rows[-1]} is out of range for {self.n} rows")
        if flat.size * FOLIO < DENSE_ROWS * len(self._map):
            return self._pread(rows, order, out).reshape(*np.shape(idx), self.d)
        # In file order: rows that share a folio are read while it is mapped (a large gather touches each
        # folio once, not once per row), and the mapping is dropped each time map_budget / FOLIO folios
        # have been touched.
        folio = rows * (self.d * 4) // FOLIO
        touched = np.cumsum(np.r_[True, folio[1:] != folio[:-1]])
        cap = max(1, self.map_budget // FOLIO)
        cuts = np.searchsorted(touched, np.arange(cap, int(touched[-1]), cap), side="right")
        for s, e in zip(np.r_[0, cuts], np.r_[cuts, rows.size]):
            out[order[s:e]] = np.take(self._view, rows[s:e], axis=0)
            # Only the slice's own folios: advising the whole mapping made the kernel walk all of a
            # 15 GB file's page tables for each slice (34 us a row at 10M rows, 2 us with the range).
            lo = int(folio[s]) * FOLIO
            hi = min(len(self._map), (int(folio[e - 1]) + 1) * FOLIO)
            self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        return out.reshape(*np.shape(idx), self.d)

    def _pread(self, rows: np.ndarray, order: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[order[i]] = row rows[i]`` for each i, one pread per row (``rows`` ascending)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
            self._close_fd = weakref.finalize(self, os.close, self._fd)  # else a dropped matrix keeps its disk
        size = self.d * 4
        buf = memoryview(out).cast("B")
        for j, offset in zip(order.tolist(), (rows * size).tolist()):
            if os.preadv(self._fd, [buf[j * size:(j + 1) * size]], offset) != size:
                raise OSError(f"{self.path}: short read at byte {offset}")
        return out

    def read_all(self) -> np.ndarray:
        """The whole matrix in memory (n x d x 4 bytes): only for methods that need all of it."""
        return self.rows(0, self.n).read() if self.n else np.zeros((0, self.d), np.float32)

    def close(self) -> None:
        self._view = None
        if self._fd is not None:
            self._close_fd()
            self._fd = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a caller still holds a view: the mapping goes with it; the file goes now
                pass
            self._map = None
        self._cleanup()

    def __enter__(self) -> "Embeddings":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
