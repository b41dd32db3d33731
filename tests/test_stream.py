"""Scoring from disk: the embeddings are spilled to a matrix file and streamed, with the same bytes.

Every streamed result is compared exactly with the in-memory computation it replaces (kept here,
in the tests, as the reference). The end-to-end bytes are pinned in test_score.py.
"""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest
import torch

from curate.errors import InputError
from curate.il import ILConfig, ILModel, train_cross_fit, train_il
from curate.io.labels import class_order
from curate.io import matrix
from curate.io.matrix import Embeddings
from curate.io.parquet import read_embeddings, read_provenance, read_table
from curate.models import train as train_mod
from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import TrainConfig, train_ensemble
from curate.runtime import Runtime
from curate.score import ScoreConfig
from curate.scores.base import ScoreContext
from curate.scores.snapshot import RowTask, score_rows, snapshot_scores, train_heads
from score_helpers import clusters, write_pool

CPU1 = Runtime.build("cpu", threads=1)


def test_rows_and_take_read_the_matrix(tmp_path):
    X, y = clusters(1000, d=7, classes=3, seed=3)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    idx = np.random.default_rng(0).integers(0, 1000, (3, 50))
    with Embeddings.from_parquet(pool, batch_rows=64, map_budget=4096) as E:
        assert (E.n, E.d) == X.shape
        np.testing.assert_array_equal(E.rows(100, 357).read(), X[100:357])
        # A task's rows travel as a path and a range, and read the same after pickling.
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(E.rows(990, 2000))).read(), X[990:])
        for _ in range(5):  # a 4 KiB budget: the map drops its pages between these reads
            got = E.take(idx)
            assert got.flags.writeable and got.shape == (3, 50, 7)
            np.testing.assert_array_equal(got, X[idx])
        odd = np.array([999, 0, 0, -1, -1000, 5, 5])  # repeats and numpy's negative indices, unsorted
        np.testing.assert_array_equal(E.take(odd), X[odd])
        assert E.take(np.zeros((0,), np.int64)).shape == (0, 7)
        np.testing.assert_array_equal(E.read_all(), X)
        scratch = E.scratch
        assert scratch.is_dir()
    assert not scratch.exists()


@pytest.mark.parametrize("dense_rows", [0, 10**9], ids=["map", "pread"])
def test_both_ways_of_gathering_read_the_same_rows(tmp_path, monkeypatch, dense_rows):
    """A file over the budget is gathered through the map (dense gathers) or a pread per row
    (sparse ones, rows per 2 MiB under DENSE_ROWS): the same rows, shapes and errors either way."""
    monkeypatch.setattr(matrix, "DENSE_ROWS", dense_rows)
    X, y = clusters(1000, d=7, classes=3, seed=3)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    idx = np.random.default_rng(1).integers(0, 1000, (10, 40))
    with Embeddings.from_parquet(pool, batch_rows=64, map_budget=4096) as E:
        for _ in range(3):
            np.testing.assert_array_equal(E.take(idx), X[idx])
        odd = np.array([999, 0, 0, -1, -1000, 5, 5])
        np.testing.assert_array_equal(E.take(odd), X[odd])
        assert E.take(np.zeros((0,), np.int64)).shape == (0, 7)
        for bad in (1000, -1001):
            with pytest.raises(IndexError):
                E.take(np.array([3, bad]))
        assert (E._fd is not None) == (dense_rows > 0)


def test_a_sparse_gather_reads_row_by_row_and_a_dropped_matrix_releases_its_file(tmp_path):
    """One row from a 16 MiB file is a sparse gather (pread, at the default threshold). Dropped
    without close (an exception's unwinding, say), the matrix closes that file descriptor, or
    the deleted file would hold its disk space until the process ends."""
    import gc
    import os

    X, y = clusters(32768, d=128, classes=3, seed=1)
    E = Embeddings.from_parquet(write_pool(tmp_path / "p.parquet", X, y), map_budget=2 * 2**20)
    np.testing.assert_array_equal(E.take(np.array([[7], [32767]])), X[[[7], [32767]]])
    fd, scratch = E._fd, E.scratch
    assert fd is not None
    del E
    gc.collect()
    assert not scratch.exists()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_spill_refuses_a_bad_row_as_read_embeddings_does(tmp_path):
    X, y = clusters(300, d=5, classes=3, seed=1)
    X[201, 2] = np.nan
    pool = write_pool(tmp_path / "p.parquet", X, y)
    with pytest.raises(InputError) as loaded:
        read_embeddings(pool, batch_rows=64)
    with pytest.raises(InputError) as spilled:
        Embeddings.from_parquet(pool, batch_rows=64)
    assert str(spilled.value) == str(loaded.value)
    assert "row 201" in str(spilled.value)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_training_from_disk_equals_training_in_memory(tmp_path, monkeypatch, dropout):
    # Several blocks of the shuffled order per epoch (250 columns), each gathered in groups of 2
    # batches (100, 100, then a short group of 50), and a short last batch.
    monkeypatch.setattr(train_mod, "ORDER_BLOCK", 3 * 50 * 5)
    monkeypatch.setattr(train_mod, "GATHER_ROWS", 3 * 50 * 2)
    X, y = clusters(1003, d=6, classes=4, seed=2, spread=2.0)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    spec = HeadSpec(arch="mlp", in_dim=6, n_classes=4, hidden=(8,), dropout=dropout)
    cfg = TrainConfig(epochs=2, batch_size=50)
    states = []
    for source in ("memory", "disk"):
        ens = Ensemble(spec, [5, 6, 7])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if source == "memory":
                train_ensemble(ens, torch.from_numpy(X), torch.from_numpy(y), cfg)
            else:
                with Embeddings.from_parquet(pool, batch_rows=100, map_budget=8192) as E:
                    train_ensemble(ens, E, torch.from_numpy(y), cfg)
        states.append(ens.state_dict())
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name


@pytest.mark.parametrize("grand_at", ["checkpoint", "init"])
def test_snapshot_scores_equal_the_per_head_arrays(tmp_path, grand_at):
    X, y = clusters(950, d=6, classes=3, seed=4, spread=2.0)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    cfg = ScoreConfig(methods=("el2n", "grand"), seeds=3, spec=HeadSpec(hidden=(8,)), grand_at=grand_at,
                      train=TrainConfig(epochs=2, batch_size=64), std=True)
    runtime = Runtime(device="cpu", threads=1, chunk=300)
    ids = pa.chunked_array([pa.array([f"r{i}" for i in range(950)])])
    with runtime.activate(), Embeddings.from_parquet(pool, batch_rows=128) as E:
        got = snapshot_scores(E, y, 3, cfg, runtime, ids)
        # The reference: heads trained in memory, every chunk's (K, b) scores kept as one (K, n) array.
        ens, init = train_heads(X, y, 3, cfg, runtime)
    state = ens.state_dict()
    grand_state = state if init is None else init.state_dict()
    parts = [score_rows(RowTask(ens.spec.to_dict(), tuple(ens.seeds), state, grand_state, X[s:s + 300], y[s:s + 300]))
             for s in range(0, 950, 300)]
    for k in ("el2n", "ce", "grand"):
        full = np.concatenate([p[k] for p in parts], axis=1)
        assert full.shape == (3, 950)
        assert got[k].mean(0).tobytes() == full.mean(0).tobytes(), k
        assert got[k].std(0).tobytes() == full.std(0).tobytes(), k


def test_il_losses_from_disk_equal_in_memory(tmp_path):
    # More rows than one IL block (65536): the blocks must line up with the in-memory ones.
    n = 70_000
    X, y = clusters(n, d=4, classes=3, seed=5, spread=2.0)
    Xh, yh = clusters(300, d=4, classes=3, seed=6, spread=2.0)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    hold = write_pool(tmp_path / "h.parquet", Xh, yh, ids=[f"h{i}" for i in range(300)])
    small = ILConfig(spec=HeadSpec(hidden=(4,)), train=TrainConfig(epochs=1, batch_size=4096))
    train_il(hold, tmp_path / "il", small, runtime=CPU1)
    train_cross_fit(pool, tmp_path / "ilx", small, runtime=CPU1)
    table = read_table(pool, columns=["id", "label"])
    ids, labels = table.column("id"), table.column("label").to_pylist()
    classes = class_order(labels)
    yi = np.array([classes.index(v) for v in labels], dtype=np.int64)
    with Embeddings.from_parquet(pool) as E:
        for model in ("il", "ilx"):
            il = ILModel(tmp_path / model)
            want = il.losses(ids.to_pylist(), labels, X, "pool")
            got = il.pool_losses(E, yi, classes, ids, "pool")
            assert got.tobytes() == want.tobytes(), model


def test_a_class_the_il_model_never_saw_is_refused(tmp_path):
    X, y = clusters(60, d=4, classes=3, seed=5)
    Xh, yh = clusters(60, d=4, classes=2, seed=6)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    hold = write_pool(tmp_path / "h.parquet", Xh, yh, ids=[f"h{i}" for i in range(60)])
    train_il(hold, tmp_path / "il", ILConfig(spec=HeadSpec(hidden=(4,)), train=TrainConfig(epochs=1)), runtime=CPU1)
    with Embeddings.from_parquet(pool) as E, pytest.raises(InputError, match="label 'c2' was never seen"):
        ILModel(tmp_path / "il").pool_losses(E, np.arange(60) % 3, ["c0", "c1", "c2"], None, "pool")


@pytest.mark.parametrize("labels", [
    pa.array(["b", "a", "c", "a", "b", "c"]),
    pa.array([3, 1, 2, 3, 1, 2], pa.int16()),
    pa.array([0.5, -1.0, 2.0, 0.5, -1.0, 2.0]),
    pa.array([True, False, True, False, True, False]),
    pa.array(["y", "x", "y", "x", "z", "z"]).dictionary_encode(),
])
def test_classes_and_y_from_arrow_equal_the_python_values(tmp_path, labels):
    X = np.zeros((6, 2), np.float32)
    pool = write_pool(tmp_path / "p.parquet", X)
    table = pa.table({"id": pa.array([f"r{i}" for i in range(6)]), "label": labels})
    ctx = ScoreContext(pool, table, read_provenance(pool), ScoreConfig(), CPU1)
    values = labels.to_pylist()
    assert ctx.classes == class_order(values)
    np.testing.assert_array_equal(ctx.y, [ctx.classes.index(v) for v in values])
    assert ctx.y.dtype == np.int64
