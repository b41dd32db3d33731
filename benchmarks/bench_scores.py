"""Scoring speed: exact batched GraNd vs a per-example autograd loop, and a 1M-row score run.

1. GraNd: the same K = 10 MLP heads (384 -> 256 -> 10) on the same rows; the loop (one
   backward per example per head, the obviously-correct definition) runs on a subsample,
   the batched computation on all rows; the ratio is of per-example medians over repeats.
2. `curate score --method el2n --method grand --method rho` on 1M synthetic rows of 384-d
   embeddings (10 Gaussian classes) with K = 10 and the default epochs, IL model trained on a
   separate 20k holdout: wall time and peak memory of the CLI process.

    python benchmarks/bench_scores.py [--rows 1000000] [--loop-rows 300]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "scores"

from curate.io.parquet import embedding_column, write_table  # noqa: E402
from curate.models.heads import Ensemble, HeadSpec  # noqa: E402
from curate.scores.grand import ensemble_grand  # noqa: E402


def synthetic(n: int, d: int = 384, classes: int = 10, seed: int = 0):
    centres = np.random.default_rng(12345).normal(size=(classes, d)).astype(np.float32)  # one distribution
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    X = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        X[s:s + 100_000] = centres[y[s:s + 100_000]] + 2.0 * rng.normal(size=(min(100_000, n - s), d)).astype(np.float32)
    return X, y


def write(path: Path, X, y) -> Path:
    if not path.exists():
        table = pa.table({"id": pa.array([f"ex{i}" for i in range(len(X))]), "label": pa.array(y.astype(np.int64)),
                          "embedding": embedding_column(X)})
        write_table(table, path, {"step": "embed", "embedding_model": {"name": "synthetic", "sha256": "0" * 64, "dimension": X.shape[1]}})
    return path


def loop_grand(ens: Ensemble, X, y) -> torch.Tensor:
    out = torch.empty(ens.k, len(X))
    for k in range(ens.k):
        head = ens.member(k).eval()
        params = list(head.parameters())
        for i in range(len(X)):
            g = torch.autograd.grad(F.cross_entropy(head(X[i:i + 1]), y[i:i + 1], reduction="sum"), params)
            out[k, i] = torch.sqrt(sum(t.pow(2).sum() for t in g))
    return out


def grand_ratio(loop_rows: int, fast_rows: int, repeats: int = 3) -> dict:
    X, y = synthetic(fast_rows)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    ens = Ensemble(HeadSpec(arch="mlp", in_dim=384, n_classes=10, hidden=(256,)), list(range(10)))
    fast, slow = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = ensemble_grand(ens, X, y)
        fast.append((time.perf_counter() - t0) / fast_rows)
        t0 = time.perf_counter()
        b = loop_grand(ens, X[:loop_rows], y[:loop_rows])
        slow.append((time.perf_counter() - t0) / loop_rows)
    err = float((a[:, :loop_rows].double() - b.double()).abs().max())
    return {"fast_us": statistics.median(fast) * 1e6, "loop_us": statistics.median(slow) * 1e6,
            "ratio": statistics.median(slow) / statistics.median(fast), "max_abs_diff": err}


def million(rows: int, device: str = "cpu") -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    pool = write(OUT / f"pool-{rows}.parquet", *synthetic(rows, seed=0))
    holdout = write(OUT / "holdout-20k.parquet", *synthetic(20_000, seed=1))
    il = OUT / "il"
    if not il.exists():
        subprocess.run([sys.executable, "-m", "curate", "il", "train", str(holdout), "-o", str(il)], check=True)
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "curate", "score", str(pool), "--il", str(il),
           "-m", "el2n", "-m", "grand", "-m", "rho", "--device", device, "-o", str(OUT / "scored.parquet"), "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return {"rows": rows, "device": device, "seconds": dt, "peak_mb": int(proc.stderr.strip().splitlines()[-1]) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--loop-rows", type=int, default=300)
    ap.add_argument("--fast-rows", type=int, default=20_000)
    ap.add_argument("--device", default="cpu", help="device of the 1M-row score run: cpu, cuda, cuda:N, mps")
    args = ap.parse_args()
    g = grand_ratio(args.loop_rows, args.fast_rows)
    print(g, file=sys.stderr)
    m = million(args.rows, args.device) if args.rows else None
    text = ("| GraNd, K = 10 MLP heads 384-256-10 | per example (µs) |\n|---|---|\n"
            f"| per-example autograd loop ({args.loop_rows} rows) | {g['loop_us']:.0f} |\n"
            f"| curate, exact batched ({args.fast_rows:,} rows) | {g['fast_us']:.2f} |\n"
            f"| **speed-up** | **{g['ratio']:.0f}x** (max abs difference {g['max_abs_diff']:.1e}, float32) |\n")
    if m:
        text += (f"\n`curate score -m el2n -m grand -m rho` on {m['rows']:,} rows x 384 d, K = 10, default epochs, --device {m['device']}: "
                 f"**{m['seconds'] / 60:.1f} min** wall, **{m['peak_mb'] / 1024:.2f} GB** peak RSS.\n")
    print(text)
    (HERE / "results" / "bench_scores.md").write_text(
        f"# Scoring speed\n\n{datetime.date.today()}, `python benchmarks/bench_scores.py --rows {args.rows} --device {args.device}`, 2 CPU cores.\n\n" + text)


if __name__ == "__main__":
    main()
