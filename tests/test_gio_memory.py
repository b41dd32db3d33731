"""GIO's memory: the pool read block by block gives the same k-means, neighbour lists and picks as
the whole pool at once, and peak RSS grows with the pool as the stated formulas say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from curate.errors import InputError
from curate.scores.gio import GioConfig, PoolRows, kmeans, quantised_memory_bytes, score_gio
from curate.scores.gio_knn import _Evaluator, gain_alone, memory_bytes, select_knn
from curate.scores.gio_selection import blocks
from score_helpers import write_pool

ROOT = Path(__file__).parents[1]


def unit_blobs(n, d, centres, seed):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    x = c[rng.integers(0, centres, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_blocks_cover_the_rows_once_and_fold_a_short_tail():
    for n in (0, 1, 4095, 8192, 8193, 30000, 65536 * 3 + 100):
        parts = blocks(n, 8192)
        assert [i for a, b in parts for i in range(a, b)] == list(range(n))
        assert all(b - a >= 4096 for a, b in parts[1:])


def test_kmeans_on_its_sample_from_parquet_equals_faiss_on_the_whole_pool(tmp_path):
    X = unit_blobs(30000, 16, 12, 0)  # 30,000 rows > 256 x 8: faiss would train on a sample
    path = write_pool(tmp_path / "pool.parquet", X)
    # The oracle: faiss on the whole array at once (what curate did before streaming).
    km = faiss.Kmeans(16, 8, niter=25, seed=3, verbose=False, spherical=False, min_points_per_centroid=1)
    km.train(X)
    want = km.index.search(X, 1)[1][:, 0]
    for source in (X, PoolRows(path, rows=8192), PoolRows(X, rows=8192)):
        centroids, assign = kmeans(source, 8, 3)
        assert len(np.unique(want)) == 8  # no empty cluster, so no re-numbering
        np.testing.assert_array_equal(centroids, km.centroids.astype(np.float64))
        np.testing.assert_array_equal(assign, want)
    # Fewer rows than 256 per centroid: faiss trains on every row, read from the file block by block.
    small = X[:12000]
    km = faiss.Kmeans(16, 50, niter=25, seed=3, verbose=False, spherical=False, min_points_per_centroid=1)
    km.train(small)
    centroids, assign = kmeans(PoolRows(write_pool(tmp_path / "small.parquet", small), rows=4096), 50, 3)
    want = km.index.search(small, 1)[1][:, 0]
    used = np.unique(want)
    np.testing.assert_array_equal(centroids, km.centroids[used].astype(np.float64))
    np.testing.assert_array_equal(used[assign], want)


def test_pool_rows_from_parquet_equal_the_array_and_name_a_bad_row(tmp_path):
    X = unit_blobs(20000, 8, 5, 1)
    path = write_pool(tmp_path / "pool.parquet", X)
    got = [(s, b.copy()) for s, b in PoolRows(path, rows=8192)]
    assert [s for s, _ in got] == [0, 8192]
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), X)
    idx = np.array([19999, 3, 8192, 0, 12345])
    np.testing.assert_array_equal(PoolRows(path, rows=8192).take(idx), X[idx])
    X[9000, 2] = np.nan
    bad = write_pool(tmp_path / "bad.parquet", X)
    with pytest.raises(InputError, match="non-finite.*row 9000"):
        list(PoolRows(bad, rows=8192))
    with pytest.raises(InputError, match="pool embedding at row 9000"):
        list(PoolRows(X, rows=8192))


def test_quantised_mode_streamed_from_parquet_equals_in_memory(tmp_path):
    X = unit_blobs(12000, 16, 10, 2)
    T = unit_blobs(400, 16, 3, 3)
    path = write_pool(tmp_path / "pool.parquet", X)
    cfg = GioConfig(clusters=20, budget=3000)
    a, pa_ = score_gio(X, T, cfg)
    b, pb = score_gio(path, T, cfg)
    assert pa_["quantised"]["examples_selected"] > 0
    for c in a:
        np.testing.assert_array_equal(a[c], b[c])
    assert pa_["kl_trajectory"] == pb["kl_trajectory"]


class _Cfg:
    def __init__(self, **kw):
        base = GioConfig().to_dict()
        base.update(kw)
        self.__dict__.update(base)


def test_knn_lists_built_block_by_block_equal_one_search():
    G = unit_blobs(13000, 16, 8, 4)
    X = unit_blobs(300, 16, 2, 5).astype(np.float64)
    one = _Evaluator(G, X, dense_limit=0, list_size=64, block_rows=1 << 20)
    many = _Evaluator(G, X, dense_limit=0, list_size=64, block_rows=4096)
    assert len(blocks(len(G), 4096)) == 3
    # Same neighbours per target (order within a list may differ on float32 ties).
    np.testing.assert_array_equal(np.sort(one.cj, axis=1), np.sort(many.cj, axis=1))
    np.testing.assert_array_equal(np.sort(one.r, axis=1), np.sort(many.r, axis=1))
    # And an oracle outside curate: each target's 64 nearest by exact float64 distances.
    d2 = np.array([((x - G.astype(np.float64)) ** 2).sum(1) for x in X])
    want = np.sort(np.argsort(d2, axis=1, kind="stable")[:, :64], axis=1)
    assert (np.sort(many.cj, axis=1) == want).mean() > 0.999
    a = select_knn(G, X, _Cfg(budget=25, dense_limit=0, list_size=64, block_rows=1 << 20))
    b = select_knn(G, X, _Cfg(budget=25, dense_limit=0, list_size=64, block_rows=4096))
    assert a.order.tolist() == b.order.tolist() and len(a.order) >= 5
    np.testing.assert_array_equal(gain_alone(G, X, None, a), gain_alone(G, X, None, b))


CHILD = r"""
import json, sys
import faiss, numpy as np, pyarrow.parquet
from curate.scores.gio import GioConfig, score_gio


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024


spec = json.loads(sys.argv[1])
base = status("VmRSS")  # before the pool: the knn formula counts the pool it holds
rng = np.random.default_rng(0)
target = rng.normal(size=(spec["m"], spec["d"]))
if spec["mode"] == "quantised":
    pool, cfg = spec["pool"], GioConfig(clusters=20)
else:
    pool = np.empty((spec["n"], spec["d"]), dtype=np.float32)
    for s in range(0, spec["n"], 65536):
        pool[s:s + 65536] = rng.normal(size=(len(pool[s:s + 65536]), spec["d"]))
    cfg = GioConfig(budget=5)
open("/proc/self/clear_refs", "w").write("5")
score_gio(pool, target, cfg)
print(json.dumps({"peak": status("VmHWM"), "base": base}))
"""


def peak(spec: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_quantised_peak_memory_does_not_grow_with_the_pool(tmp_path):
    """From 30k to 120k rows (the pool: 46 MB -> 184 MB of float32) the streamed quantised mode's
    peak grows as its formula says (one block, 25 bytes per row), not by the pool."""
    d, sizes, runs = 384, (30_000, 120_000), []
    for n in sizes:
        path = write_pool(tmp_path / f"p{n}.parquet", unit_blobs(n, d, 20, n))
        runs.append(peak({"mode": "quantised", "pool": str(path), "n": n, "m": 200, "d": d})["peak"])
    grew = runs[1] - runs[0]
    formula = quantised_memory_bytes(sizes[1], 20, d) - quantised_memory_bytes(sizes[0], 20, d)
    pool_growth = 4 * d * (sizes[1] - sizes[0])
    assert grew < formula + 0.1 * pool_growth, (grew, formula, pool_growth)


def test_knn_peak_memory_grows_as_the_formula_says():
    """Neighbour-list mode at 60k and 240k candidates: peak growth within 15% of memory_bytes's growth."""
    d, m, sizes = 384, 400, (60_000, 240_000)
    assert sizes[0] * m > 20_000_000  # both sizes use the neighbour lists
    grew = [peak({"mode": "knn", "n": n, "m": m, "d": d}) for n in sizes]
    measured = (grew[1]["peak"] - grew[1]["base"]) - (grew[0]["peak"] - grew[0]["base"])
    formula = memory_bytes(sizes[1], m, d) - memory_bytes(sizes[0], m, d)
    assert abs(measured - formula) < 0.15 * formula, (measured, formula)


def test_cli_quantised_mode_reads_the_pool_file_and_matches_the_library(tmp_path):
    from conftest import run
    import pyarrow.parquet as pq

    X = unit_blobs(3000, 16, 8, 6)
    T = unit_blobs(200, 16, 2, 7)
    pool = write_pool(tmp_path / "pool.parquet", X)
    target = write_pool(tmp_path / "target.parquet", T, ids=[f"t{i}" for i in range(200)])
    out = tmp_path / "out.parquet"
    r = run("score", pool, "--target", target, "-m", "gio", "--clusters", 12, "-o", out)
    assert r.exit_code == 0, r.stderr
    want, _ = score_gio(X, T, GioConfig(clusters=12))
    t = pq.read_table(out)
    np.testing.assert_array_equal(t.column("gio_selected").to_numpy(), want["gio_selected"])
    np.testing.assert_array_equal(t.column("gio_score").to_numpy(), want["gio_score"])
    order = t.column("gio_order").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(np.where(np.isnan(order), -1, order), want["gio_order"])
