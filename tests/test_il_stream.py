"""`curate il train` (and --cross-fit) read the embeddings from disk: the same bytes as in memory.

The end-to-end bytes are pinned in ``tests/fixtures/il_pinned.json`` (recorded from the in-memory
code, see ``il_pinned_helpers.py``); the training loop itself is compared with its in-memory form.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from curate.errors import InputError
from curate.il import _write_assignment
from curate.io.label_codes import read_label_codes
from curate.io.labels import class_order
from curate.io.matrix import Embeddings
from curate.io.parquet import write_table
from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import RowSubset, TrainConfig, eval_loss_acc, stratified_split, train_with_validation
from curate.runtime import Runtime
from il_pinned_helpers import pinned_il_runs
from score_helpers import clusters, write_pool


def test_il_train_gives_the_pinned_bytes(tmp_path):
    want = json.loads((Path(__file__).parent / "fixtures" / "il_pinned.json").read_text())
    assert pinned_il_runs(tmp_path) == want


def _split_reference(y, fraction, seed):
    """stratified_split as it was written before streaming: one pass over y per class, Python lists."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * fraction))
        if fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


@pytest.mark.parametrize("y", [
    np.random.default_rng(0).choice([0, 2, 5], 500).astype(np.int32),  # codes with an absent class: counted
    np.r_[np.random.default_rng(1).integers(0, 7, 300), [9]],  # a class of one row
    np.random.default_rng(2).integers(-3, 3, 400),  # negative labels: sorted
    np.random.default_rng(3).choice([10**9, 7, 10**12], 200),  # codes above n: sorted
])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_stratified_split_draws_what_it_always_drew(y, fraction):
    tr, va = stratified_split(y, fraction, 11)
    want_tr, want_va = _split_reference(y, fraction, 11)
    assert tr.dtype == va.dtype == np.int64
    np.testing.assert_array_equal(tr, want_tr)
    np.testing.assert_array_equal(va, want_va)


CPU1 = Runtime.build("cpu", threads=1)  # tiny heads: more threads only contend


def _fit(spec, Xtr, ytr, Xva, yva, cfg, patience):
    ens = Ensemble(spec, [3])
    with torch.random.fork_rng(devices=[]), CPU1.activate():
        torch.manual_seed(3)  # dropout's generator, as il train seeds it
        return train_with_validation(ens, Xtr, ytr, Xva, yva, cfg, patience)


@pytest.mark.parametrize("arch,hidden,dropout,lr,patience,stops_early", [("mlp", (8,), 0.3, 1e-2, 3, False),
                                                                         ("linear", (), 0.0, 0.1, 1, True)])
def test_training_from_disk_equals_training_in_memory(tmp_path, arch, hidden, dropout, lr, patience, stops_early):
    X, y = clusters(700, d=6, classes=4, seed=2, spread=2.0)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    tr, va = stratified_split(y, 0.2, 1)
    spec = HeadSpec(arch=arch, in_dim=6, n_classes=4, hidden=hidden, dropout=dropout)
    cfg = TrainConfig(epochs=8, batch_size=32, lr=lr)
    ytr, yva = torch.from_numpy(y[tr]), torch.from_numpy(y[va])
    want, want_curve, want_best = _fit(spec, torch.from_numpy(X[tr]), ytr, torch.from_numpy(X[va]), yva, cfg, patience)
    # A 4 KiB map budget: the rows are gathered a slice at a time, the mapping dropped in between.
    with Embeddings.from_parquet(pool, batch_rows=100, map_budget=4096) as E:
        got, curve, best = _fit(spec, RowSubset(E, tr), ytr, RowSubset(E, va), yva, cfg, patience)
    assert (curve, best) == (want_curve, want_best)
    assert len(curve) > 2 and (len(curve) - 1 < cfg.epochs) == stops_early
    for k, v in want.state_dict().items():
        assert got.state_dict()[k].numpy().tobytes() == v.numpy().tobytes(), k


def test_validation_read_in_chunks_gives_the_same_loss_and_accuracy(tmp_path):
    X, y = clusters(500, d=5, classes=3, seed=4, spread=3.0)
    pool = write_pool(tmp_path / "p.parquet", X, y)
    ens = Ensemble(HeadSpec(arch="mlp", in_dim=5, n_classes=3, hidden=(4,)), [1])
    rows = np.sort(np.random.default_rng(0).choice(500, 321, replace=False))
    yt = torch.from_numpy(y[rows])
    with Embeddings.from_parquet(pool) as E, CPU1.activate():
        for chunk in (7, 64, 65536):  # 46 chunks, 6 chunks, one
            got = eval_loss_acc(ens, RowSubset(E, rows), yt, chunk)
            assert got == eval_loss_acc(ens, torch.from_numpy(X[rows]), yt, chunk), chunk
    # The oracle: the mean of per-row cross-entropies and the share of right answers, in float64.
    with torch.no_grad():
        out = ens(torch.from_numpy(X[rows]))[0].double()
    assert got[0] == pytest.approx(float(torch.nn.functional.cross_entropy(out, yt)), rel=1e-6)
    assert got[1] == pytest.approx(float((out.argmax(1) == yt).double().mean()), rel=1e-6)


def _labels_file(path, labels: pa.Array):
    ids = pa.array([f"r{i}" for i in range(len(labels))])
    pq.write_table(pa.table({"id": ids, "label": labels}), path, row_group_size=7)
    return path


@pytest.mark.parametrize("labels", [
    pa.array([f"c{i % 13}" for i in range(40)]),
    pa.array([i % 12 for i in range(40)], pa.int32()),  # text order "10" < "2" is not numeric order
    pa.array([0.0, -0.0, 1.5, -2.0] * 10),  # 0.0 == -0.0 in Python, not in text
    pa.array([i % 3 == 0 for i in range(40)]),
    pa.array([["z", "y", "x"][i % 3] for i in range(40)]).dictionary_encode(),
])
def test_label_codes_equal_the_python_values(tmp_path, labels):
    codes = read_label_codes(_labels_file(tmp_path / "l.parquet", labels), "test", batch_rows=5)
    values = labels.to_pylist()
    classes, y = codes.classes()
    assert classes == class_order(values) and y.dtype == np.int64
    np.testing.assert_array_equal(y, [classes.index(v) for v in values])
    rows = np.arange(3, 40, 4)
    classes, y = codes.classes(rows)
    assert classes == class_order([values[i] for i in rows])
    np.testing.assert_array_equal(y, [classes.index(values[i]) for i in rows])
    # The cross-fit halves are stratified by the labels' text.
    np.testing.assert_array_equal(codes.text_codes(), np.unique(np.array([str(v) for v in values]), return_inverse=True)[1])


def test_a_null_label_in_a_later_batch_names_its_row(tmp_path):
    labels = pa.array([None if i == 13 else f"c{i % 3}" for i in range(20)])
    with pytest.raises(InputError, match=r"label is null or NaN for id r13\b"):
        read_label_codes(_labels_file(tmp_path / "l.parquet", labels), "il train", batch_rows=5)


def test_assignment_written_batch_by_batch_equals_the_whole_table(tmp_path):
    n = 40_000  # three row groups
    ids = pa.array([f"id-{i * 7919 % n}" for i in range(n)])
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"id": ids, "label": pa.array(["a"] * n)}), pool, row_group_size=5000)
    half = (np.random.default_rng(0).random(n) < 0.5).astype(np.int8)
    _write_assignment(pool, half, tmp_path / "streamed.parquet")
    write_table(pa.table({"id": ids, "half": pa.array(half, pa.int8())}), tmp_path / "whole.parquet")
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
