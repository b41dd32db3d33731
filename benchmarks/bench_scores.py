"""Scoring speed against its floor: GraNd vs a per-example autograd loop and vs one batched
forward + backward pass, the score run's phases in units of that pass, and a 1M-row score + prune.

1. The floor: one batched forward + backward pass (gradients of every parameter, summed CE) of the
   same K = 10 MLP heads (384 -> 256 -> 10) over the same rows, in chunks of 8,192 rows (the
   scoring chunk). No scoring pass can do less arithmetic than one forward over every row, and
   GraNd needs a backward too, so this pass is what GraNd should cost.
2. GraNd: ``ensemble_grand`` over --fast-rows rows; the per-example loop (one backward per example
   per head, the obviously-correct definition) on --loop-rows rows, scaled per row. Ratios of
   per-row medians over --repeats repeats, interleaved floor / GraNd / loop.
3. The phases of `curate score -m el2n -m grand -m rho`, in process, on --fast-rows rows: training
   the K heads for the default epochs (3 x (forward + backward + AdamW step) in batches of 128),
   the per-row pass (`score_rows`: el2n, ce and GraNd per chunk, one forward for the three), each
   as a multiple of the floor; the per-row pass also as a multiple of GraNd alone (what el2n and ce
   add to it).
4. `curate score -m el2n -m grand -m rho` and then `curate prune` on --rows synthetic rows (10
   Gaussian classes), K = 10, default epochs, IL model trained on a separate 20k holdout: wall time
   and peak RSS of each CLI process, and the score's wall time over the floor scaled to --rows.

    python benchmarks/bench_scores.py [--rows 1000000] [--fast-rows 50000] [--loop-rows 300] [--repeats 3]

Expected run time on a quiet 2-core machine: about 9 minutes at the defaults (the 1M-row score
is about 6.5 of them; --rows 0 skips step 4).
"""

from __future__ import annotations

import argparse
import datetime
import os
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


CHUNK = 8192  # Runtime.chunk's default: rows a scoring pass holds at once


def heads() -> Ensemble:
    return Ensemble(HeadSpec(arch="mlp", in_dim=384, n_classes=10, hidden=(256,)), list(range(10)))


def floor_pass(ens: Ensemble, X: torch.Tensor, y: torch.Tensor) -> None:
    """One forward + backward (every parameter's gradient, summed CE) of the K heads over every row."""
    ens.eval()
    params = list(ens.parameters())
    for s in range(0, len(X), CHUNK):
        logits = ens(X[s:s + CHUNK])
        k, b, c = logits.shape
        loss = F.cross_entropy(logits.reshape(k * b, c), y[s:s + CHUNK].repeat(k), reduction="sum")
        torch.autograd.grad(loss, params)


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def score_config():
    from curate.score import ScoreConfig

    return ScoreConfig(methods=("el2n", "grand", "rho"), il="unused")


def train_phase(X: np.ndarray, y: np.ndarray):
    from curate.runtime import Runtime
    from curate.scores.snapshot import train_heads

    return train_heads(X, y, 10, score_config(), Runtime.build(device="cpu", threads=torch.get_num_threads()))[0]


def rows_phase(ens: Ensemble, X: np.ndarray, y: np.ndarray) -> None:
    from curate.scores.snapshot import RowTask, score_rows

    state = {k: v.detach().cpu() for k, v in ens.state_dict().items()}
    for s in range(0, len(y), CHUNK):
        score_rows(RowTask(ens.spec.to_dict(), tuple(ens.seeds), state, state, X[s:s + CHUNK], y[s:s + CHUNK]))


def against_floor(loop_rows: int, fast_rows: int, repeats: int) -> dict:
    """Per-row seconds (medians) of the floor, GraNd, the loop and the score phases, interleaved."""
    Xn, yn = synthetic(fast_rows)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    ens = heads()
    t = {k: [] for k in ("floor", "grand", "loop", "train", "rows")}
    for _ in range(repeats):
        t["floor"].append(timed(floor_pass, ens, X, y) / fast_rows)
        t["grand"].append(timed(ensemble_grand, ens, X, y, CHUNK) / fast_rows)
        t["loop"].append(timed(loop_grand, ens, X[:loop_rows], y[:loop_rows]) / loop_rows)
        t0 = time.perf_counter()
        trained = train_phase(Xn, yn)
        t["train"].append((time.perf_counter() - t0) / fast_rows)
        t["rows"].append(timed(rows_phase, trained, Xn, yn) / fast_rows)
    med = {k: statistics.median(v) for k, v in t.items()}
    a = ensemble_grand(ens, X[:loop_rows], y[:loop_rows], CHUNK)
    b = loop_grand(ens, X[:loop_rows], y[:loop_rows])
    med["max_abs_diff"] = float((a.double() - b.double()).abs().max())
    med["epochs"] = score_config().epochs
    return med


def cli(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `curate` process."""
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "curate", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return dt, int(proc.stderr.strip().splitlines()[-1]) / 1024


def million(rows: int, device: str = "cpu") -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    pool = write(OUT / f"pool-{rows}.parquet", *synthetic(rows, seed=0))
    holdout = write(OUT / "holdout-20k.parquet", *synthetic(20_000, seed=1))
    il = OUT / "il"
    if not il.exists():
        subprocess.run([sys.executable, "-m", "curate", "il", "train", str(holdout), "-o", str(il)], check=True)
    scored = OUT / "scored.parquet"
    s_wall, s_peak = cli(["score", str(pool), "--il", str(il), "-m", "el2n", "-m", "grand", "-m", "rho",
                          "--device", device, "-o", str(scored), "--overwrite"])
    p_wall, p_peak = cli(["prune", str(scored), "--keep", "el2n in [q0.10, q0.90]", "--keep", "rho > 0",
                          "-o", str(OUT / "pruned.parquet"), "--overwrite"])
    return {"rows": rows, "device": device, "seconds": s_wall, "peak_mb": s_peak, "prune_seconds": p_wall,
            "prune_peak_mb": p_peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--loop-rows", type=int, default=300)
    ap.add_argument("--fast-rows", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="device of the 1M-row score run: cpu, cuda, cuda:N, mps")
    args = ap.parse_args()
    g = against_floor(args.loop_rows, args.fast_rows, args.repeats)
    print(g, file=sys.stderr)
    m = million(args.rows, args.device) if args.rows else None
    us = lambda k: g[k] * 1e6  # noqa: E731
    fl = g["floor"]
    text = (f"K = 10 MLP heads 384-256-10, float32, {torch.get_num_threads()} torch threads; per-row medians of "
            f"{args.repeats} interleaved repeats; the floor is one forward + backward pass of the K heads.\n\n"
            "| pass | per row (µs) | x floor |\n|---|---|---|\n"
            f"| **floor**: forward + backward of the K heads ({args.fast_rows:,} rows, chunks of {CHUNK:,}) | {us('floor'):.2f} | 1 |\n"
            f"| GraNd, curate's exact batched pass ({args.fast_rows:,} rows) | {us('grand'):.2f} | **{g['grand'] / fl:.2f}** |\n"
            f"| GraNd, per-example autograd loop ({args.loop_rows} rows) | {us('loop'):.0f} | {g['loop'] / fl:.0f} |\n"
            f"| score phase: train the K heads, {g['epochs']} epochs, batches of 128 ({args.fast_rows:,} rows) | {us('train'):.2f} | {g['train'] / fl:.2f} "
            f"({g['train'] / fl / g['epochs']:.2f} per epoch) |\n"
            f"| score phase: per-row pass, el2n + ce + GraNd (`score_rows`) | {us('rows'):.2f} | {g['rows'] / fl:.2f} "
            f"({g['rows'] / g['grand']:.2f} x GraNd alone) |\n\n"
            f"GraNd: **{g['loop'] / g['grand']:.0f}x** the per-example loop (max abs difference {g['max_abs_diff']:.1e}, "
            f"float32), **{g['grand'] / fl:.2f}x** the floor.\n")
    if m:
        floor_s = fl * m["rows"]
        text += (f"\n`curate score -m el2n -m grand -m rho` on {m['rows']:,} rows x 384 d, K = 10, default epochs, --device "
                 f"{m['device']}: **{m['seconds'] / 60:.1f} min** wall (**{m['seconds'] / floor_s:.1f}x** the floor scaled to "
                 f"{m['rows']:,} rows, {floor_s:.0f} s), **{m['peak_mb'] / 1024:.2f} GB** peak RSS; then `curate prune "
                 f"--keep 'el2n in [q0.10, q0.90]' --keep 'rho > 0'`: {m['prune_seconds']:.0f} s, "
                 f"{m['prune_peak_mb'] / 1024:.2f} GB peak RSS.\n")
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_scores.md").write_text(
        f"# Scoring speed against its floor\n\n{datetime.date.today()}, `python benchmarks/bench_scores.py --rows {args.rows} "
        f"--fast-rows {args.fast_rows} --loop-rows {args.loop_rows} --repeats {args.repeats} --device {args.device}`, "
        f"{os.cpu_count()} CPU cores.\n\n" + text)


if __name__ == "__main__":
    main()
