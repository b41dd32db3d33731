"""Which half of a cross-fit IL model saw each id (``assignment.parquet``), looked up without Python objects.

``curate il train --cross-fit`` writes the assignment in the pool's row order, so scoring that
same pool is the common case: its ids are compared with the assignment's, slice by slice, both
files streamed, and the halves are read off the assignment column (memory: one int8 a row, the
halves returned, plus a block). When the ids are in another order or are a subset, each block of
ids is looked up in the assignment sorted by id (polars' binary search on strings, exact):
memory then about 17 bytes an assignment row (its ids in polars' string view, its halves), in
native buffers.

An id in the assignment twice keeps its last half, as a dict built in file order would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import InputError
from curate.io.id_index import IdIndex
from curate.io.parquet import ROW_GROUP_ROWS, open_stream

BLOCK = 65536  # ids searched in the sorted assignment at once (the aligned comparison goes by its batches)


def _strings(values: Any) -> pa.Array:
    """One block of ids (an Arrow array or chunked array, a lazy ``ParquetColumn`` view, or a
    list) as an Arrow string array: the assignment's ids were written cast to strings."""
    if hasattr(values, "arrow"):
        values = values.arrow()
    elif isinstance(values, list):
        values = pa.array(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_string(values.type):
        return values
    return values.cast(pa.string())


def _python(values: Any, i: int) -> Any:
    """Row ``i`` of one block of ids as the caller gave it (for the error message)."""
    if isinstance(values, list):
        return values[i]
    return values[i:i + 1].to_pylist()[0]


class Assignment:
    """``assignment.parquet`` of the cross-fit model ``model``: columns ``id`` (string) and ``half`` (0 or 1)."""

    def __init__(self, path: Path, model: Path):
        self.path, self.model = Path(path), Path(model)
        pf = open_stream(self.path)
        names = pf.schema_arrow.names
        missing = [c for c in ("id", "half") if c not in names]
        if missing:
            raise InputError(f"{self.path}: missing column(s) {', '.join(missing)}; columns present: {', '.join(names)}")
        self.rows = pf.metadata.num_rows
        self._index: IdIndex | None = None

    def halves(self, ids: Any, where: str, keep_index: bool = False) -> np.ndarray:
        """The half (int8, (n,), 0 or 1) that saw each of ``ids`` (n,), sliceable: a list, an Arrow
        array, a chunked array or a ``ParquetColumn``. An id not in the assignment is refused,
        the first one in row order named. ``keep_index``: keep the sorted assignment for the next
        call (many small calls, as in online selection), else it is freed on return."""
        n = len(ids)
        if n == self.rows:
            same = self._aligned(ids)
            if same is not None:
                return same
        index = self._index if self._index is not None else self._sorted()
        if keep_index:
            self._index = index
        out = np.empty(n, dtype=np.int8)
        for s in range(0, n, BLOCK):
            out[s:s + BLOCK] = self._lookup(index, ids[s:s + BLOCK], where)
        return out

    def _batches(self):
        """The assignment's (ids as strings, halves as int8), batch by batch, the halves checked."""
        batches = open_stream(self.path).iter_batches(batch_size=ROW_GROUP_ROWS, columns=["id", "half"], use_threads=False)
        while True:
            try:
                batch = next(batches, None)
            except (OSError, pa.ArrowException) as e:  # a damaged page: the footer alone was checked on opening
                raise InputError(f"{self.path}: could not read ({type(e).__name__}: {e}); "
                                 "re-create the model with `curate il train --cross-fit`") from None
            if batch is None:
                return
            half = batch.column(1)
            ok = pc.is_in(half, value_set=pa.array([0, 1], half.type)) if pa.types.is_integer(half.type) else None
            if ok is None or half.null_count or not pc.all(ok).as_py():
                raise InputError(f"{self.path}: column 'half' must hold 0 or 1 on every row; "
                                 "re-create the model with `curate il train --cross-fit`")
            yield _strings(batch.column(0)), half.to_numpy(zero_copy_only=False).astype(np.int8)

    def _aligned(self, ids: Any) -> np.ndarray | None:
        """The halves when ``ids`` are the assignment's ids in its order, else None (at the first
        block that differs)."""
        out = np.empty(self.rows, dtype=np.int8)
        start = 0
        for a_ids, a_half in self._batches():
            stop = start + len(a_ids)
            mine = _strings(ids[start:stop])
            if mine.null_count or not pc.all(pc.equal(mine, a_ids)).as_py():
                return None
            out[start:stop] = a_half
            start = stop
        return out

    def _sorted(self) -> IdIndex:
        """The assignment's ids sorted (equal ids in file order: the last one wins) with their halves."""
        return IdIndex(self._batches(), np.int8)

    def _lookup(self, index: IdIndex, block: Any, where: str) -> np.ndarray:
        """The halves (int8) of one block of ids, by binary search in the sorted assignment."""
        found, halves = index.lookup(_strings(block))
        if not found.all():
            bad = _python(block, int(np.flatnonzero(~found)[0]))
            raise InputError(f"{where}: id {bad!r} is not in the cross-fit model {self.model}; "
                             "a cross-fit IL model scores only the pool it was trained on")
        return halves
