"""The pool's embeddings as a float32 matrix on disk, so that n never has to fit in memory.

``score`` spills the Parquet ``embedding`` column once, batch by batch, into a raw row-major
float32 file in a private temporary directory (``$TMPDIR``), then reads rows from it:

- in order, by row range (:class:`MatrixRows`, a picklable description an engine can ship:
  the reader gets exactly its rows with one ``pread``, into ordinary memory);
- at random, by index array (:meth:`Embeddings.take`), for training batches in a shuffled order.
  A memory map serves these; its pages are file-backed (``RssFile``), so after every
  ``map_budget`` bytes gathered the mapping is told to drop them (``MADV_DONTNEED``: the page
  cache keeps them, the process's resident set does not). Peak resident memory of the map is
  therefore about ``map_budget`` (32 MiB) plus one batch, whatever n is.

Why a raw matrix rather than Parquet row groups: a shuffled batch touches rows all over the
file, and a Parquet row group must be decompressed whole to read one row of it
(``benchmarks/bench_scale.py --access`` measures both).
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.io.parquet import iter_embeddings

MAP_BUDGET = 32 * 2**20  # bytes gathered through the map before its pages are dropped (re-mapping a cached page is cheap)


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
    ``map_budget`` + the rows of the current request.
    """

    def __init__(self, path: Path, n: int, d: int, map_budget: int = MAP_BUDGET):
        self.path, self.n, self.d, self.map_budget = Path(path), n, d, map_budget
        self._map: mmap.mmap | None = None
        self._view: np.ndarray | None = None
        self._gathered = 0

    @classmethod
    def from_parquet(cls, path: str | Path, batch_rows: int = 65536, map_budget: int = MAP_BUDGET) -> "Embeddings":
        """Spill ``path``'s embedding column (validated as ``read_embeddings`` does) to a temp file."""
        tmp = Path(tempfile.mkdtemp(prefix="curate-embeddings-"))
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
        return cls(file, n, d, map_budget)

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
        out = self._view[idx]
        self._gathered += out.nbytes
        if self._gathered >= self.map_budget and self._map is not None:
            self._map.madvise(mmap.MADV_DONTNEED)
            self._gathered = 0
        return out

    def read_all(self) -> np.ndarray:
        """The whole matrix in memory (n x d x 4 bytes): only for methods that need all of it."""
        return self.rows(0, self.n).read() if self.n else np.zeros((0, self.d), np.float32)

    def close(self) -> None:
        self._view = None
        if self._map is not None:
            self._map.close()
            self._map = None
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "Embeddings":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        # A context that is never closed (an exception before score's finally) still cleans up.
        try:
            if os.path.isdir(self.scratch):
                self.close()
        except Exception:
            pass
