"""GIO toward the k-NN KL estimate: bookkeeping vs brute force, greedy picks vs exhaustive search,
coverage of every target mode, negative and self consistency, and the neighbour-list mode."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curate.scores.gio import GioConfig, score_gio
from curate.scores.gio_knn import knn_estimate, select_knn, target_radii


def blobs(n_per, centres, spread, seed):
    rng = np.random.default_rng(seed)
    pts = [c + spread * rng.normal(size=(n, len(c))) for c, n in zip(centres, n_per)]
    labels = np.concatenate([np.full(n, i) for i, n in enumerate(n_per)])
    return np.vstack(pts), labels


def brute_knn_estimate(X, W, k, eps=1e-8, ranks="mean", cap=math.inf):
    """Wang et al.'s estimate at each rank l, written out; averaged over l = 1..k or at l = k."""
    n, d = X.shape
    per_rank = []
    for l in range(1, k + 1):
        total = 0.0
        for i, x in enumerate(X):
            rho = sorted(math.dist(x, z) for j, z in enumerate(X) if j != i)[l - 1]
            nu = min(sorted(math.dist(x, w) for w in W)[l - 1], cap)
            total += math.log(nu + eps) - math.log(rho + eps)
        per_rank.append(d / n * total + math.log(len(W) / (n - 1)))
    return sum(per_rank) / k if ranks == "mean" else per_rank[-1]


def test_estimate_equals_brute_force():
    rng = np.random.default_rng(0)
    X, W = rng.normal(size=(30, 3)), rng.normal(size=(12, 3)) + 0.3
    assert knn_estimate(X, W, k=3) == pytest.approx(brute_knn_estimate(X, W, 3), abs=1e-10)
    assert knn_estimate(X, W, k=3, ranks="k") == pytest.approx(brute_knn_estimate(X, W, 3, ranks="k"), abs=1e-10)
    assert np.allclose(target_radii(X, 3), [sorted(math.dist(x, z) for j, z in enumerate(X) if j != i)[:3] for i, x in enumerate(X)])


def test_incremental_estimate_equals_recomputation_after_every_step():
    centres = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], float)
    X, _ = blobs([20, 15, 10], centres, 0.7, 1)
    P, _ = blobs([40, 40, 40], centres, 0.9, 2)
    cfg = GioConfig(estimator="knn", k=3, budget=25)
    sel = select_knn(P, X, cfg)
    assert len(sel.order) >= 10
    R = max(math.dist(a, b) for a in X for b in X)  # distances are capped at the target's diameter
    for step in range(cfg.k, len(sel.order) + 1):
        W = P[sel.order[:step]]
        assert sel.trajectory[step - 1] == pytest.approx(brute_knn_estimate(X, W, cfg.k, cap=R), abs=1e-9)
        assert sel.extra["kl_trajectory_rank_k"][step - 1] == pytest.approx(brute_knn_estimate(X, W, cfg.k, ranks="k", cap=R), abs=1e-9)


def test_each_pick_is_the_best_candidate_by_exhaustive_search():
    centres = np.array([[0, 0], [3, 0], [0, 3]], float)
    X, _ = blobs([15, 10, 8], centres, 0.6, 3)
    P, _ = blobs([20, 20, 20], centres, 0.8, 4)
    k = 3
    sel = select_knn(P, X, GioConfig(estimator="knn", k=k, budget=20))
    R = max(math.dist(a, b) for a in X for b in X)
    for step in range(k, len(sel.order)):  # from the k-th pick on the estimate is defined without phantoms
        W = P[sel.order[:step]]
        best, best_j = math.inf, None
        for j in range(len(P)):
            if j in sel.order[:step]:
                continue
            v = knn_estimate(X, np.vstack([W, P[j:j + 1]]), k, cap=R)
            if v < best - 1e-12:
                best, best_j = v, j
        assert sel.order[step] == best_j, f"pick {step}"


def test_every_mode_gets_picks_in_proportion_to_its_share():
    rng = np.random.default_rng(5)
    d = 8
    centres = 6 * rng.normal(size=(4, d)) / np.sqrt(d) * 3
    X, tl = blobs([120, 60, 30, 30], centres, 0.5, 6)  # shares 1/2, 1/4, 1/8, 1/8
    P, pl = blobs([300, 300, 300, 300], centres, 0.5, 7)
    cols, prov = score_gio(P, X, GioConfig(estimator="knn", budget=80))
    picks = np.bincount(pl[cols["gio_selected"]], minlength=4)
    assert (picks > 0).all()
    share = picks / picks.sum()
    # Tolerance: within 0.12 of each mode's share of the target.
    np.testing.assert_allclose(share, [0.5, 0.25, 0.125, 0.125], atol=0.12)


def test_pool_far_from_the_target_selects_nothing():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(60, 4))
    P = rng.normal(size=(200, 4)) + 50.0
    sel = select_knn(P, X, GioConfig(estimator="knn", k=5))
    assert len(sel.order) == 0
    assert sel.stop_reason == "no candidate lowers the estimate"


def test_pool_equal_to_the_target_selects_a_representative_set():
    centres = np.array([[0, 0, 0], [6, 0, 0]], float)
    X, lab = blobs([100, 50], centres, 1.0, 10)
    sel = select_knn(X, X, GioConfig(estimator="knn", k=5))
    picked = lab[sel.order]
    # A subset that covers both modes and stops by itself, not a copy of the pool.
    assert sel.stop_reason == "no candidate lowers the estimate"
    assert 2 * 5 <= len(sel.order) < len(X) / 2
    assert set(picked) == {0, 1}
    assert sel.trajectory[-1] < sel.trajectory[0]


def test_neighbour_list_mode_matches_dense_when_lists_cover():
    centres = np.array([[0, 0, 0], [5, 0, 0]], float)
    X, _ = blobs([30, 20], centres, 0.5, 11)
    P, _ = blobs([200, 200], centres, 0.5, 12)
    dense = select_knn(P, X, GioConfig(estimator="knn", budget=30))
    lists = select_knn(P, X, _Cfg(estimator="knn", budget=30, dense_limit=0, list_size=400))
    assert lists.extra["evaluation"].startswith("faiss neighbour lists")
    assert lists.order.tolist() == dense.order.tolist()  # L = every candidate: exact


class _Cfg:
    def __init__(self, **kw):
        base = GioConfig().to_dict()
        base.update(kw)
        self.__dict__.update(base)


def test_quantised_mode_with_knn_estimator():
    rng = np.random.default_rng(13)
    centres = 5 * rng.normal(size=(6, 8))
    X, _ = blobs([100, 100, 0, 0, 0, 0], centres, 0.4, 14)
    P, pl = blobs([400] * 6, centres, 0.4, 15)
    cols, prov = score_gio(P, X, GioConfig(estimator="knn", clusters=30))
    picked = pl[cols["gio_selected"]]
    assert len(picked) > 0 and np.isin(picked, [0, 1]).mean() > 0.9
    assert set(np.unique(picked)) == {0, 1}
