"""GIO with the reference estimate: formula, gradient, incremental bookkeeping, the reference's
own selection, recovery of an on-target subset, quantised mode and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.scores.gio import GioConfig, score_gio
from curate.scores.gio_reference import ReferenceState, estimate, gradient, initial_points, select_reference
from score_helpers import write_pool

FIXTURE = Path(__file__).parent / "fixtures" / "gio_reference_small.json"
runner = CliRunner()


def clustered(n_pool, n_target, d, clusters, target_modes, spread, seed):
    # The same generator as benchmarks/_gio_problems.py, which produced the fixture.
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from _gio_problems import clustered as make

    return make(n_pool, n_target, d, clusters, target_modes, spread, seed)


def brute_estimate(X, W, k=5, eps=1e-8):
    """The reference formula written out with loops over every pair and every rank."""
    n, d = X.shape
    m = len(W)
    xy = [math.log(math.sqrt(max(float(((x - w) ** 2).sum()), 1e-10)) + eps) for x in X for w in W]
    rho = []
    for i, x in enumerate(X):
        dists = sorted(math.sqrt(max(float(((x - z) ** 2).sum()), 1e-10)) for j, z in enumerate(X) if j != i)
        rho.append(math.log(dists[k - 1] + eps))
    ranks = [math.log(k * m / (l * (n - 1))) for l in range(1, m + 1)]
    return d * sum(xy) / len(xy) - d * sum(rho) / n + sum(ranks) / m


def test_estimate_equals_brute_force():
    rng = np.random.default_rng(0)
    X, W = rng.normal(size=(25, 4)), rng.normal(size=(9, 4)) + 0.5
    assert estimate(X, W, k=5) == pytest.approx(brute_estimate(X, W, k=5), abs=1e-10)
    assert estimate(X, W, k=2) == pytest.approx(brute_estimate(X, W, k=2), abs=1e-10)


def test_gradient_equals_finite_differences():
    rng = np.random.default_rng(1)
    X, W, v = rng.normal(size=(30, 5)), rng.normal(size=(7, 5)), rng.normal(size=5)
    g = gradient(X, v, len(W), 1e-8)
    h = 1e-6
    fd = [(estimate(X, np.vstack([W, v + h * e])) - estimate(X, np.vstack([W, v - h * e]))) / (2 * h) for e in np.eye(5)]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_incremental_bookkeeping_equals_recomputation_after_every_step():
    P, T, _, _ = clustered(200, 50, 6, 5, 2, 0.8, 3)
    P, T = P.astype(np.float64), T.astype(np.float64)
    cfg = GioConfig(max_iter=30)
    sel = select_reference(P, T, cfg)
    assert len(sel.order) >= 5
    W0 = initial_points(6, cfg.init_points, cfg.seed)
    state = ReferenceState(T, W0, cfg.k, cfg.eps)
    for step, j in enumerate(sel.order, start=1):
        W = np.vstack([W0, P[sel.order[:step]]])
        d2 = np.clip(((T - P[j]) ** 2).sum(1), 1e-10, None)
        state.add(float(np.log(np.sqrt(d2) + cfg.eps).sum()))
        assert state.value() == pytest.approx(estimate(T, W), abs=1e-9)
        assert sel.trajectory[step] == pytest.approx(estimate(T, W), abs=1e-9)


def test_selection_equals_the_reference_package():
    record = json.loads(FIXTURE.read_text())
    P, T, _, _ = clustered(**record["problem"])
    sel = select_reference(P.astype(np.float64), T.astype(np.float64), GioConfig(seed=record["seed"]))
    assert sel.order.tolist() == record["order"]  # same set, same order
    np.testing.assert_allclose(sel.trajectory[1:], record["kl_divs"], rtol=1e-5)  # the reference runs in float32
    assert sel.stop_reason == "estimate increased"


def test_max_iter_off_by_one_and_budget():
    P, T, _, _ = clustered(400, 80, 6, 4, 1, 0.5, 0)
    sel = select_reference(P, T, GioConfig(max_iter=4))
    assert len(sel.order) <= 5
    if sel.stop_reason == "max_iter":
        assert len(sel.order) == 5  # the reference accepts iterations 0..max_iter
    assert len(select_reference(P, T, GioConfig(budget=3)).order) <= 3


def test_recovers_on_target_points_and_lowers_the_estimate_faster_than_random():
    P, T, pool_cluster, _ = clustered(3000, 300, 32, 10, 2, 0.5, 1)
    cols, prov = score_gio(P, T, GioConfig(estimator="reference", max_iter=60))
    picked = np.flatnonzero(cols["gio_selected"])
    assert len(picked) >= 20
    assert np.isin(pool_cluster[picked], [0, 1]).all()  # target modes are clusters 0 and 1
    W0 = initial_points(32, 20, 0)
    order = np.argsort(cols["gio_order"][picked])
    gio_kl = estimate(T.astype(np.float64), np.vstack([W0, P[picked[order]]]))
    rng = np.random.default_rng(0)
    random_kl = [estimate(T.astype(np.float64), np.vstack([W0, P[rng.choice(len(P), len(picked), replace=False)]])) for _ in range(5)]
    assert gio_kl < min(random_kl)
    assert prov["kl_trajectory"][-1] < prov["kl_trajectory"][0]
    # gio_score ranks on-target candidates above off-target ones.
    on = np.isin(pool_cluster, [0, 1])
    assert cols["gio_score"][on].mean() > cols["gio_score"][~on].mean()


def test_quantised_mode_expands_centroids_to_members():
    P, T, pool_cluster, _ = clustered(3000, 400, 16, 8, 2, 0.4, 2)
    cols, prov = score_gio(P, T, GioConfig(estimator="reference", clusters=24, max_iter=10))
    q = prov["quantised"]
    assert q["centroids_selected"] >= 1 and q["examples_selected"] == int(cols["gio_selected"].sum())
    picked = np.flatnonzero(cols["gio_selected"])
    # Target modes are clusters 0 and 1; k-means splits them into 5 centroids, picked first.
    first = picked[cols["gio_order"][picked] < 5]
    assert np.isin(pool_cluster[first], [0, 1]).all() and len(first) > 0
    assert set(np.unique(cols["gio_order"][picked])) == set(range(q["centroids_selected"]))
    capped, _ = score_gio(P, T, GioConfig(estimator="reference", clusters=24, max_iter=10, budget=50))
    assert capped["gio_selected"].sum() == min(50, q["examples_selected"])


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_writes_gio_columns_with_null_order(tmp_path):
    P, T, _, _ = clustered(500, 60, 8, 4, 1, 0.5, 0)
    pool = write_pool(tmp_path / "pool.parquet", P, (np.arange(500) % 2).tolist())
    target = write_pool(tmp_path / "target.parquet", T, ids=[f"t{i}" for i in range(60)])
    out = tmp_path / "out.parquet"
    r = run("score", pool, "--target", target, "-m", "gio", "--gio-estimator", "reference", "--max-iter", 9, "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    sel = t.column("gio_selected").to_numpy(zero_copy_only=False)
    order = t.column("gio_order")
    assert str(order.type) == "int32" and order.null_count == (~sel).sum()
    assert sorted(order.drop_null().to_pylist()) == list(range(sel.sum()))
    from curate.io.parquet import read_provenance

    g = read_provenance(out)["scores"]["gio_order"]
    assert g["config"]["max_iter"] == 9 and g["stop_reason"] and len(g["kl_trajectory"]) == sel.sum() + 1
    # The default estimator is knn (see the README for the evidence).
    out2 = tmp_path / "knn.parquet"
    r = run("score", pool, "--target", target, "-m", "gio", "-o", out2)
    assert r.exit_code == 0, r.stderr
    assert read_provenance(out2)["scores"]["gio_selected"]["estimator"] == "knn"


def _fails(args, out, *fragments):
    r = run(*args)
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    for f in fragments:
        assert f in r.stderr, r.stderr
    assert not Path(out).exists()


def test_bad_inputs(tmp_path):
    P, T, _, _ = clustered(100, 30, 8, 4, 1, 0.5, 0)
    pool = write_pool(tmp_path / "pool.parquet", P)
    out = tmp_path / "o.parquet"
    tiny = write_pool(tmp_path / "tiny.parquet", T[:5], ids=[f"t{i}" for i in range(5)])
    _fails(["score", pool, "--target", tiny, "-m", "gio", "-o", out], out, "5 points", "--gio-k 5")
    empty = write_pool(tmp_path / "empty.parquet", T[:0], ids=[])
    _fails(["score", pool, "--target", empty, "-m", "gio", "-o", out], out, "empty")
    target = write_pool(tmp_path / "t.parquet", T, ids=[f"t{i}" for i in range(30)])
    _fails(["score", pool, "--target", target, "-m", "gio", "--budget", 500, "-o", out], out, "--budget 500", "100 rows")
    bad = T.copy()
    bad[3, 0] = np.inf
    nonfinite = write_pool(tmp_path / "nf.parquet", bad, ids=[f"t{i}" for i in range(30)])
    _fails(["score", pool, "--target", nonfinite, "-m", "gio", "-o", out], out, "non-finite", "row 3")
    narrow = write_pool(tmp_path / "narrow.parquet", T[:, :4].copy(), ids=[f"t{i}" for i in range(30)])
    _fails(["score", pool, "--target", narrow, "-m", "gio", "-o", out], out, "embedding_model.dimension is 4 vs 8")
    other = write_pool(tmp_path / "other.parquet", T, ids=[f"t{i}" for i in range(30)], model_sha="b" * 64)
    _fails(["score", pool, "--target", other, "-m", "gio", "-o", out], out, "embedding_model.sha256 is 'bbbb", "re-run `curate embed`")
    _fails(["score", pool, "-m", "gio", "-o", out], out, "--target")


def test_provenance_carries_both_estimates_of_the_picks():
    from curate.scores.gio_knn import knn_estimate, target_diameter

    P, T, _, _ = clustered(300, 40, 6, 4, 2, 0.6, 5)
    for estimator in ("reference", "knn"):
        cols, prov = score_gio(P, T, GioConfig(estimator=estimator, budget=12, max_iter=50))
        order = np.argsort(np.where(cols["gio_order"] < 0, 1 << 30, cols["gio_order"]))[: int(cols["gio_selected"].sum())]
        both = prov["kl_trajectories_of_picks"]
        assert len(both["reference"]) == len(both["knn"]) == len(order)
        W = P[order].astype(np.float64)
        X = T.astype(np.float64)
        assert both["reference"][-1] == pytest.approx(estimate(X, W), abs=1e-6)
        if len(order) >= 5:
            assert both["knn_rank_k"][-1] == pytest.approx(knn_estimate(X, W, 5, ranks="k", cap=target_diameter(X)), abs=1e-6)


def test_gio_record_is_stored_once_and_read_for_every_column(tmp_path):
    import json

    P, T, _, _ = clustered(300, 40, 8, 4, 1, 0.5, 0)
    pool = write_pool(tmp_path / "pool.parquet", P, (np.arange(300) % 2).tolist())
    target = write_pool(tmp_path / "target.parquet", T, ids=[f"t{i}" for i in range(40)])
    out = tmp_path / "out.parquet"
    assert run("score", pool, "--target", target, "-m", "gio", "-m", "el2n", "-K", 2, "-o", out).exit_code == 0
    # A second run adds grand and keeps the others: the kept records stay stored once.
    assert run("score", out, "-m", "grand", "-K", 2, "-o", out, "--overwrite").exit_code == 0
    raw = json.loads(pq.ParquetFile(out).schema_arrow.metadata[b"curate"])["scores"]
    gio = ["gio_selected", "gio_order", "gio_score"]
    full = [c for c in gio if "kl_trajectory" in raw[c]]
    assert len(full) == 1
    assert all(raw[c] == {"method": "gio", "same_as": full[0]} for c in gio if c != full[0])
    assert "same_as" not in raw["el2n"] and "same_as" not in raw["grand"]
    from curate.io.parquet import read_provenance

    scores = read_provenance(out)["scores"]
    assert scores["gio_order"] == scores["gio_score"] == scores["gio_selected"]
    assert scores["gio_order"]["stop_reason"]
