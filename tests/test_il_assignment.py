"""A cross-fit IL model looks each id's half up without a Python dict: the same losses as the dict did.

The reference here is the lookup curate used before (a dict from ``assignment.parquet``'s ids to
halves, row by row) followed by the same per-half blocks of 65536 rows through the model that
did not see each row: the bytes must be equal, for the pool the model was trained on (its ids in
the assignment's order), for that pool shuffled and for a shuffled subset of it.
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import curate.il_assignment
from curate.il import ILConfig, ILModel, train_cross_fit
from curate.io.parquet import embedding_array
from curate.models.heads import HeadSpec
from curate.models.train import TrainConfig
from curate.runtime import Runtime
from curate.scores.rho import per_example_ce
from conftest import assert_fails, run
from score_helpers import clusters, write_pool

N = 20_000  # more than one assignment batch (16,384 rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("assign")
    X, y = clusters(N, d=4, classes=3, seed=21, spread=2.0)
    ids = [f"id-{(i * 7919) % N:06d}" for i in range(N)]  # not sorted: the sorted index is really searched
    pool = write_pool(d / "pool.parquet", X, y, ids=ids)
    cfg = ILConfig(spec=HeadSpec(hidden=(4,)), train=TrainConfig(epochs=1, batch_size=4096))
    train_cross_fit(pool, d / "cf", cfg, runtime=Runtime.build(device="cpu", threads=1))
    return d, pool, d / "cf"


def _reference(cf, ids: list[str], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Losses by the dict lookup, each half's rows through the other half's model in blocks of 65536."""
    t = pq.read_table(cf / "assignment.parquet")
    assignment = dict(zip(t.column("id").to_pylist(), t.column("half").to_pylist()))
    halves = np.array([assignment[i] for i in ids])
    model = ILModel(cf)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    out = torch.empty(len(ids), dtype=torch.float64)
    with torch.no_grad():
        for h in (0, 1):
            idx = torch.from_numpy(np.flatnonzero(halves == h))
            for s in range(0, len(idx), 65536):
                part = idx[s:s + 65536]
                out[part] = per_example_ce(model.heads[1 - h](Xt[part]).double(), yt[part])
    return out.numpy()


def _rewrite(src, dst, rows: np.ndarray, ids: list[str] | None = None):
    """``src``'s rows in the order ``rows`` (a permutation or a subset), ids replaced if given."""
    t = pq.read_table(src).take(pa.array(rows))
    if ids is not None:
        t = t.set_column(0, "id", pa.array(ids, pa.string()))
    X = embedding_array(t.column("embedding"))
    return write_pool(dst, X, t.column("label").to_pylist(), ids=t.column("id").to_pylist())


def _score_il_loss(pool, cf, out) -> np.ndarray:
    r = run("score", pool, "-m", "rho", "--il", cf, "-K", 1, "-t", 1, "--arch", "linear", "--threads", 1,
            "--device", "cpu", "-o", out)
    assert r.exit_code == 0, r.stderr
    return pq.read_table(out, columns=["il_loss"]).column("il_loss").to_numpy()


@pytest.mark.parametrize("order", ["same", "shuffled", "subset"])
def test_scored_il_loss_equals_the_dict_lookup(trained, tmp_path, order, monkeypatch):
    d, pool, cf = trained
    monkeypatch.setattr(curate.il_assignment, "BLOCK", 4096)  # several lookup blocks at this size
    rng = np.random.default_rng(3)
    rows = {"same": np.arange(N), "shuffled": rng.permutation(N), "subset": rng.permutation(N)[:5000]}[order]
    scored = pool if order == "same" else _rewrite(pool, tmp_path / "p.parquet", rows)
    t = pq.read_table(scored)
    X = embedding_array(t.column("embedding"))
    y = np.array([int(v[1]) for v in t.column("label").to_pylist()])
    want = _reference(cf, t.column("id").to_pylist(), X, y)
    got = _score_il_loss(scored, cf, tmp_path / "s.parquet")
    assert got.tobytes() == want.tobytes()


def test_index_losses_with_a_list_of_ids_equal_the_dict_lookup(trained, monkeypatch):
    d, pool, cf = trained
    monkeypatch.setattr(curate.il_assignment, "BLOCK", 300)
    t = pq.read_table(pool)
    X = embedding_array(t.column("embedding"))
    y = np.array([int(v[1]) for v in t.column("label").to_pylist()])
    ids = t.column("id").to_pylist()
    model = ILModel(cf)
    # Online selection's calls: small batches in any order, the sorted assignment kept between them.
    for rows in (np.arange(N), np.random.default_rng(4).permutation(N)[:1000], np.array([17, 3, 17])):
        batch = [ids[i] for i in rows]
        got = model.index_losses(torch.from_numpy(X[rows]), torch.from_numpy(y[rows]), batch).numpy()
        assert got.tobytes() == _reference(cf, batch, X[rows], y[rows]).tobytes()


def test_an_id_not_in_the_assignment_is_refused_naming_the_first(trained, tmp_path):
    d, pool, cf = trained
    rows = np.random.default_rng(5).permutation(N)[:3000]
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()
    ids = [ids[i] for i in rows]
    ids[1200], ids[2500] = "foreign-b", "foreign-a"  # the first in row order is named, not the smallest
    bad = _rewrite(pool, tmp_path / "bad.parquet", rows, ids=ids)
    out = tmp_path / "s.parquet"
    assert_fails(["score", bad, "-m", "rho", "--il", cf, "-K", 1, "-t", 1, "--arch", "linear", "-o", out],
                 "id 'foreign-b' is not in the cross-fit model", "scores only the pool it was trained on", out=out)
    # The same pool's length with one foreign id: the aligned comparison fails over to the lookup, which refuses it.
    same_len = pq.read_table(pool, columns=["id"]).column("id").to_pylist()
    same_len[N - 1] = "foreign-c"
    bad = _rewrite(pool, tmp_path / "bad2.parquet", np.arange(N), ids=same_len)
    assert_fails(["score", bad, "-m", "rho", "--il", cf, "-K", 1, "-t", 1, "--arch", "linear", "-o", out],
                 "id 'foreign-c' is not in the cross-fit model", out=out)
    model = ILModel(cf)
    with pytest.raises(Exception, match="id 'zz' is not in the cross-fit model"):
        model.index_losses(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), [same_len[0], "zz"], "batch")


def test_an_assignment_with_a_half_other_than_0_or_1_is_refused(trained, tmp_path):
    d, pool, cf = trained
    bad = tmp_path / "cf"
    shutil.copytree(cf, bad)
    t = pq.read_table(cf / "assignment.parquet")
    half = t.column("half").to_numpy().copy()
    half[N - 5] = 2
    pq.write_table(t.set_column(1, "half", pa.array(half, pa.int8())), bad / "assignment.parquet")
    out = tmp_path / "s.parquet"
    assert_fails(["score", pool, "-m", "rho", "--il", bad, "-K", 1, "-t", 1, "--arch", "linear", "-o", out],
                 "assignment.parquet: column 'half' must hold 0 or 1 on every row", out=out)
