"""A Parquet file's ``label`` column as integer codes, read batch by batch.

n labels become one (n,) int32 array of codes into the list of distinct labels: one Python
object per distinct label, never one per row (10M rows: 40 MB, where a list of labels is ~0.6 GB).

Distinct labels are told apart by their text ``str(v)``, as Arrow's ``unique`` tells them apart:
the only values of one Arrow type that are equal in Python but differ in text are 0.0 and -0.0.
So both views are exact: :meth:`LabelCodes.classes` merges Python-equal labels (``class_order``,
a dict lookup), :meth:`LabelCodes.text_codes` keeps them apart (sorting the labels' text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import InputError
from curate.io.labels import class_order, require_labels
from curate.io.parquet import open_stream


@dataclass(frozen=True)
class LabelCodes:
    """``codes``: (n,) int32, row i's label is ``values[codes[i]]``; ``values``: distinct labels
    (Python values, distinct texts) in order of first appearance."""

    codes: np.ndarray
    values: list[Any]

    def classes(self, rows: np.ndarray | None = None) -> tuple[list[Any], np.ndarray]:
        """``(classes, y)`` for the labels of ``rows`` (an index array; None = every row):
        ``classes = class_order(labels)``, ``y`` (len(rows),) int64 with ``labels[i] == classes[y[i]]``."""
        sub = self.codes if rows is None else self.codes[rows]
        present = np.flatnonzero(np.bincount(sub, minlength=len(self.values)))
        classes = class_order([self.values[i] for i in present])
        index = {c: i for i, c in enumerate(classes)}
        lut = np.full(len(self.values), -1, dtype=np.int64)
        lut[present] = [index[self.values[i]] for i in present]
        return classes, lut[sub]

    def text_codes(self) -> np.ndarray:
        """(n,) int32 rank of each row's ``str(label)`` among the distinct texts, sorted:
        ``np.unique([str(v) for v in labels], return_inverse=True)[1]`` without the n strings."""
        order = sorted(range(len(self.values)), key=lambda i: str(self.values[i]))
        rank = np.empty(len(self.values), dtype=np.int32)
        rank[order] = np.arange(len(order))
        return rank[self.codes]


def read_label_codes(path: str | Path, what: str, batch_rows: int = 65536) -> LabelCodes:
    """The ``label`` column of ``path`` as :class:`LabelCodes`; memory: the codes and one batch.

    Missing column, null or NaN labels: the InputError of ``require_labels`` (naming the row's id).
    """
    pf = open_stream(path)
    if "label" not in pf.schema_arrow.names:
        require_labels(pf.schema_arrow.empty_table(), path, what)  # raises: no label column
    codes = np.empty(pf.metadata.num_rows, dtype=np.int32)
    values: list[Any] = []
    index: dict[str, int] = {}
    start = 0
    columns = ["id", "label"] if "id" in pf.schema_arrow.names else ["label"]  # the id names a bad row
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
            labels = batch.column("label")
            if pa.types.is_dictionary(labels.type):
                labels = labels.dictionary_decode()
            missing = labels.null_count > 0
            if pa.types.is_floating(labels.type):
                missing = missing or pc.any(pc.is_nan(labels)).as_py()
            if missing:
                require_labels(pa.Table.from_batches([batch]), path, what)  # raises, naming the row's id
            distinct = pc.unique(labels)
            local = np.empty(len(distinct), dtype=np.int32)
            for j, v in enumerate(distinct.to_pylist()):
                key = str(v)
                if key not in index:
                    index[key] = len(values)
                    values.append(v)
                local[j] = index[key]
            pos = pc.index_in(labels, value_set=distinct).to_numpy(zero_copy_only=False)
            codes[start:start + len(labels)] = local[pos]
            start += len(labels)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{path}: could not read ({type(e).__name__}: {e})") from None
    return LabelCodes(codes, values)
