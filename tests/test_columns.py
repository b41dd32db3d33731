"""Score columns read by row range (curate/io/columns.py) and the context's streamed ids and labels.

Each lazy reading is compared with the in-memory value it replaces.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pyarrow as pa
import pytest

from curate.errors import InputError
from curate.il import ILConfig, ILModel, _group_blocks, train_cross_fit, train_il
from curate.io.columns import ArrayColumn, DiskColumn, MapColumn, ParquetColumn, as_column
from curate.io.labels import class_order
from curate.io.matrix import Embeddings
from curate.io.parquet import ROW_GROUP_ROWS, embedding_column, open_stream, read_provenance, read_table, write_table
from curate.models.heads import HeadSpec
from curate.models.train import TrainConfig
from curate.runtime import Runtime
from curate.score import ScoreConfig, _check_ids
from curate.scores.base import ScoreContext, finite_column
from curate.scores.el2n import El2n
from score_helpers import clusters, write_pool

CPU1 = Runtime.build("cpu", threads=1)


def test_disk_column_reads_what_was_appended_and_is_private(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=k) for k in (5, 0, 300, 17)]
    col = DiskColumn(np.float64, dir=tmp_path)
    for c in chunks:
        col.append(c)
    full = np.concatenate(chunks)
    assert col.n == len(full) and col.type == pa.float64()
    assert stat.S_IMODE(os.stat(col.path).st_mode) == 0o600
    for s, e in ((0, 322), (3, 9), (300, 400), (322, 330), (10, 10)):
        assert col.read(s, e).tobytes() == full[s:min(e, 322)].tobytes()
    assert col.arrow(4, 20).equals(pa.array(full[4:20]))
    assert col.to_numpy().tobytes() == full.tobytes()
    starts = [s for s, _ in col.batches(100)]
    assert starts == [0, 100, 200, 300]
    diff = MapColumn(np.subtract, col, ArrayColumn(np.ones(322)))
    assert diff.read(7, 50).tobytes() == (full[7:50] - 1).tobytes()
    path = col.path
    col.close()
    assert not path.exists()
    with pytest.raises(ValueError, match="different lengths"):
        MapColumn(np.subtract, ArrayColumn(np.ones(3)), ArrayColumn(np.ones(4)))


def test_a_dropped_disk_column_deletes_its_file(tmp_path):
    col = DiskColumn(np.int32, dir=tmp_path)
    col.append(np.arange(10))
    path = col.path
    del col
    assert not path.exists()


def test_array_column_keeps_nulls_and_types():
    arr = pa.chunked_array([pa.array([1.5, None]), pa.array([3.0])])
    col = as_column(arr)
    assert col.n == 3 and col.type == pa.float64()
    assert col.arrow(1, 3).to_pylist() == [None, 3.0]
    np.testing.assert_array_equal(col.read(0, 3), [1.5, np.nan, 3.0])
    assert as_column(col) is col


def test_parquet_column_reads_ranges_across_row_groups(tmp_path):
    n = 2 * ROW_GROUP_ROWS + 123
    ids = [f"id{i}" for i in range(n)]
    pool = write_pool(tmp_path / "p.parquet", np.zeros((n, 2), np.float32), ids=ids)
    assert open_stream(pool).metadata.num_row_groups == 3
    col = ParquetColumn(open_stream(pool), "id")
    assert len(col) == n
    for s, e in ((0, 5), (ROW_GROUP_ROWS - 2, ROW_GROUP_ROWS + 3), (10, n), (n - 1, n + 50)):
        assert col[s:e].to_pylist() == ids[s:e]
    view = col[ROW_GROUP_ROWS:]
    assert view[0] == ids[ROW_GROUP_ROWS] and view[-1] == ids[-1]
    assert view[5:9].to_pylist() == ids[ROW_GROUP_ROWS + 5:ROW_GROUP_ROWS + 9]
    with pytest.raises(IndexError):
        view[len(view)]


def test_finite_column_names_the_bad_row_by_its_id(tmp_path):
    n = 70_000  # past one check batch (65536)
    ids = [f"id{i}" for i in range(n)]
    pool = write_pool(tmp_path / "p.parquet", np.zeros((n, 2), np.float32), ids=ids)
    v = np.zeros(n)
    v[66_000] = np.inf
    col = DiskColumn()
    col.append(v)
    with pytest.raises(InputError, match=r"il_loss: non-finite value at row 66000 \(id 'id66000'\)"):
        finite_column("il_loss", col, ParquetColumn(open_stream(pool), "id"))


def test_summary_is_read_batch_by_batch():
    v = np.random.default_rng(1).normal(size=150_000)
    col = DiskColumn()
    col.append(v)
    got = El2n().summarise({"el2n": col})["el2n"]
    assert got["min"] == v.min() and got["max"] == v.max()
    assert got["mean"] == pytest.approx(v.mean(), rel=1e-12)


def _pool_with_labels(path, labels: pa.Array):
    n = len(labels)
    table = pa.table({"id": pa.array([f"r{i}" for i in range(n)]), "label": labels,
                      "embedding": embedding_column(np.zeros((n, 2), np.float32))})
    write_table(table, path, {"step": "embed"})
    return path


@pytest.mark.parametrize("kind", ["str", "int", "dict"])
def test_labels_streamed_into_codes_equal_the_python_values(tmp_path, kind):
    # Classes first seen in a non-sorted order, one class only in the last batch.
    n = 2 * ROW_GROUP_ROWS + 500
    rng = np.random.default_rng(2)
    raw = rng.choice([7, 3, 5], size=n)
    raw[-300:] = 1
    labels = {"str": pa.array([f"c{v}" for v in raw]), "int": pa.array(raw, pa.int32()),
              "dict": pa.array([f"c{v}" for v in raw]).dictionary_encode()}[kind]
    pool = _pool_with_labels(tmp_path / "p.parquet", labels)
    ctx = ScoreContext(pool, None, read_provenance(pool), ScoreConfig(), CPU1)
    values = labels.to_pylist()
    classes = class_order(values)
    assert ctx.n == n and ctx.classes == classes
    index = {c: i for i, c in enumerate(classes)}
    want = np.array([index[v] for v in values])
    assert ctx.codes.dtype == np.int16
    np.testing.assert_array_equal(ctx.codes, want)
    assert ctx.y.dtype == np.int64
    np.testing.assert_array_equal(ctx.y, want)
    assert ctx.labels == values


def test_a_null_label_in_a_later_batch_names_its_id(tmp_path):
    n = ROW_GROUP_ROWS + 100
    labels = ["a", "b"] * (n // 2)
    labels[ROW_GROUP_ROWS + 40] = None
    pool = _pool_with_labels(tmp_path / "p.parquet", pa.array(labels))
    ctx = ScoreContext(pool, None, read_provenance(pool), ScoreConfig(), CPU1)
    with pytest.raises(InputError, match=f"label is null or NaN for id r{ROW_GROUP_ROWS + 40};"):
        ctx.codes


@pytest.mark.parametrize("case", ["none", "dup", "null"])
def test_ids_are_checked_batch_by_batch(tmp_path, case):
    n = 2 * ROW_GROUP_ROWS + 10
    ids = [f"r{i}" for i in range(n)]
    if case == "dup":
        ids[ROW_GROUP_ROWS + 5] = "r7"  # a repeat across batches,
        ids[2 * ROW_GROUP_ROWS + 3] = "r2"  # and a later one: the first repeat in row order is named
    if case == "null":
        ids[ROW_GROUP_ROWS + 9] = None
    table = pa.table({"id": pa.array(ids, pa.string()), "embedding": embedding_column(np.zeros((n, 2), np.float32))})
    pool = write_table(table, tmp_path / "p.parquet")
    if case == "none":
        _check_ids(pool, n)
        return
    want = "duplicate id 'r7'; ids must be unique" if case == "dup" else f"id is null at row {ROW_GROUP_ROWS + 9};"
    with pytest.raises(InputError, match=want):
        _check_ids(pool, n)


def test_group_blocks_equal_slices_of_the_index():
    halves = (np.random.default_rng(3).random(1000) < 0.3).astype(np.int8)
    for h in (0, 1):
        for size in (1, 7, 64, 1000, 5000):
            want = np.flatnonzero(halves == h)
            got = list(_group_blocks(halves, h, size))
            assert [len(b) for b in got] == [len(want[s:s + size]) for s in range(0, len(want), size)]
            np.testing.assert_array_equal(np.concatenate(got), want)


def test_il_losses_into_a_disk_column_equal_in_memory(tmp_path):
    n = 3000
    X, y = clusters(n, d=4, classes=3, seed=5, spread=2.0)
    Xh, yh = clusters(300, d=4, classes=3, seed=6, spread=2.0)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    hold = write_pool(tmp_path / "h.parquet", Xh, yh, ids=[f"h{i}" for i in range(300)])
    small = ILConfig(spec=HeadSpec(hidden=(4,)), train=TrainConfig(epochs=1, batch_size=512))
    train_il(hold, tmp_path / "il", small, runtime=CPU1)
    train_cross_fit(pool, tmp_path / "ilx", small, runtime=CPU1)
    table = read_table(pool, columns=["id", "label"])
    labels = table.column("label").to_pylist()
    classes = class_order(labels)
    codes = np.array([classes.index(v) for v in labels], dtype=np.int16)
    with Embeddings.from_parquet(pool) as E:
        for model in ("il", "ilx"):
            il = ILModel(tmp_path / model)
            want = il.losses(table.column("id").to_pylist(), labels, X, "pool")
            out = DiskColumn()
            got = il.pool_losses(E, codes, classes, ParquetColumn(open_stream(pool), "id"), "pool", out=out)
            assert got is out and out.to_numpy().tobytes() == want.tobytes(), model
            out.close()


def test_score_leaves_no_private_files(tmp_path, monkeypatch):
    import tempfile

    from conftest import run

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # Every private file of the run (spilled matrix, score columns, order) is made under tempfile's directory.
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    X, y = clusters(200, d=4, classes=3, seed=9)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    r = run("score", pool, "-m", "el2n", "-m", "grand", "--std", "-K", 2, "-t", 1, "--arch", "linear", "-o", tmp_path / "o.parquet")
    assert r.exit_code == 0, r.stderr
    assert read_table(tmp_path / "o.parquet").num_rows == 200
    # (torch may leave a cache directory of its own there.)
    assert [p.name for p in scratch.iterdir() if p.name.startswith("curate-")] == []
