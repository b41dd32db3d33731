"""A file's string ids sorted once, each with a value, for exact lookups of many blocks of ids.

Built from (ids, values) batches; looked up a block at a time by binary search (polars'
``search_sorted`` on strings, then an equality check at the position found), so a block of m ids
costs m log n, whatever the number of blocks: a hash set built per block (``pc.is_in`` against
all n ids) costs n per block, quadratic over a file. Memory: the ids in polars' string view plus
the values, in native buffers. Among equal ids the last in batch order wins, as a dict built in
file order would keep.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import polars as pl
import pyarrow as pa


class IdIndex:
    """Sorted string ids and the value of each; ``lookup`` answers which ids of a block are present."""

    def __init__(self, batches: Iterable[tuple[pa.Array, np.ndarray]], dtype):
        ids, values = [], []
        for b_ids, b_values in batches:
            ids.append(pl.from_arrow(b_ids) if len(b_ids) else pl.Series("id", [], dtype=pl.String))
            values.append(np.asarray(b_values, dtype=dtype))
        if not ids:
            self.keys, self.values = pl.Series("id", [], dtype=pl.String), np.empty(0, dtype=dtype)
            return
        frame = pl.DataFrame({"id": pl.concat(ids, rechunk=True), "value": np.concatenate(values)})
        del ids, values
        frame = frame.sort("id", maintain_order=True)  # stable: equal ids stay in batch order
        self.keys, self.values = frame.get_column("id"), frame.get_column("value").to_numpy()

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, block: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(found, values) for a block of string ids: ``found`` (m,) bool; ``values`` (m,) the value
        of each found id (the last of equal ids), meaningless where not found. A null id is not found."""
        query = pl.Series("id", block)
        pos = self.keys.search_sorted(query, side="right").to_numpy().astype(np.int64) - 1
        found = pos >= 0  # an empty index: every position is -1
        if len(self.keys):
            found &= (self.keys.gather(np.maximum(pos, 0)) == query).fill_null(False).to_numpy()
        values = self.values[np.maximum(pos, 0)] if len(self.values) else np.zeros(len(pos), dtype=self.values.dtype)
        return found, values
