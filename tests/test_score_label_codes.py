"""`curate score` turns the pool's labels into class codes as `il train` does (``read_label_codes``).

Reference: the labels as Python values, their classes by ``class_order`` and each row's index by a
dict lookup (Python equality: 0.0 and -0.0 are one class, named by the first seen).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate.io.labels import class_order
from curate.io.parquet import ROW_GROUP_ROWS, embedding_column, read_provenance, write_table
from curate.runtime import Runtime
from curate.score import ScoreConfig
from curate.scores.base import ScoreContext
from conftest import assert_fails


def _pool(path, labels: pa.Array):
    n = len(labels)
    table = pa.table({"id": pa.array([f"r{i}" for i in range(n)]), "label": labels,
                      "embedding": embedding_column(np.zeros((n, 2), np.float32))})
    write_table(table, path, {"step": "embed", "embedding_model": {"name": "synthetic", "sha256": "a" * 64, "dimension": 2}})
    return path


@pytest.mark.parametrize("first", [-0.0, 0.0])
def test_signed_zero_labels_are_one_class_across_batches(tmp_path, first):
    n = 2 * ROW_GROUP_ROWS + 100
    rng = np.random.default_rng(1)
    raw = rng.choice([-0.0, 0.0, 2.5, -1.0], size=n)
    raw[0] = first
    raw[-50:] = 7.0  # a class first seen in the last batch
    pool = _pool(tmp_path / "p.parquet", pa.array(raw))
    ctx = ScoreContext(pool, None, read_provenance(pool), ScoreConfig(), Runtime.build(device="cpu", threads=1))
    values = pa.array(raw).to_pylist()
    classes = class_order(values)
    index = {c: i for i, c in enumerate(classes)}
    assert len(classes) == 4 and str(classes[1]) == str(first)  # the first seen zero names the class
    assert [str(c) for c in ctx.classes] == [str(c) for c in classes]
    assert ctx.codes.dtype == np.int16
    np.testing.assert_array_equal(ctx.codes, [index[v] for v in values])


def test_a_null_label_is_refused_naming_its_id(tmp_path):
    labels = ["a", "b"] * (ROW_GROUP_ROWS + 10)
    labels[ROW_GROUP_ROWS + 7] = None
    pool = _pool(tmp_path / "p.parquet", pa.array(labels))
    assert_fails(["score", pool, "-m", "el2n", "-K", 1, "-t", 1, "-o", tmp_path / "s.parquet"],
                 f"label is null or NaN for id r{ROW_GROUP_ROWS + 7}", "el2n needs a label on every row",
                 out=tmp_path / "s.parquet")
