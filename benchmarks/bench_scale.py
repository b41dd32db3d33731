"""Memory and time of the whole pipeline at 1M, 3M and 10M rows: does memory stay flat as n grows?

For each size, synthetic 384-d vectors (10 Gaussian classes, unit length, 5% of labels flipped)
go through the steps a user runs, each in its own process:

- embed:  the vectors written by curate's own Parquet writer with embed's provenance record, in
          16384-row row groups as `curate embed` writes its shards (the model is skipped);
- il:     `curate il train` on a 20k-row holdout drawn the same way (the same at every size);
- score:  `curate score -m el2n -m grand -m rho -K 10` (the default 3 epochs, batch 128);
- prune:  `curate prune` with two per-class quantile windows (el2n and rho);
- report: `curate report`.

Per step: wall time, peak resident set (VmHWM, which counts file-backed pages too), and the peaks
of anonymous and file-backed resident memory (RssAnon, RssFile, sampled every 50 ms in the
process). The last column is the step's peak divided by its peak at the smallest size.

`--access` instead measures the choice behind `curate.io.matrix`: gathering shuffled training
batches (K x b random rows) from the spilled float32 matrix as curate does on a file over its map
budget (a memory map read in slices of the budget), as it did before (each slice's pages dropped
by advising the whole mapping), with a pread per row, through a memory map
of the whole file (its pages stay resident), and from the Parquet file (the row groups holding the
rows, decoded); interleaved A B C D, medians and their ratios. Sparsity (rows per 2 MiB of file)
decides the map's cost: at 10M rows a 16,384-row gather touches about 2 rows per 2 MiB, as
`--access-rows 1000000` with the default 10 x 128 does.

    python benchmarks/bench_scale.py                                   # 1M, 3M, 10M (hours)
    python benchmarks/bench_scale.py --sizes 1000000                   # 1M only (~15 min quiet)
    python benchmarks/bench_scale.py --sizes 20000 --dim 32 --holdout 2000   # smoke (~1 min)
    python benchmarks/bench_scale.py --access --access-rows 1000000    # curate's gather vs pread, a whole map, Parquet
    python benchmarks/bench_scale.py --prune-alone --dim 16            # prune only, scored files of random scores

Disk: each size needs about 4 x n x dim x 4 bytes at once (pool, scored copy, the score step's
spilled matrix, pruned copy) under --workdir; everything is deleted after the size unless --keep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Runs the curate CLI (or this file's writer) in this process and records its memory peaks.
CHILD = r"""
import json, os, sys, threading, time
peaks = {"RssAnon": 0, "RssFile": 0}
def status():
    return {k: int(v.split()[0]) * 1024 for k, v in (l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
            if k in ("VmHWM", "RssAnon", "RssFile")}
def sample():
    while True:
        s = status()
        for k in peaks:
            peaks[k] = max(peaks[k], s[k])
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
out, argv = sys.argv[1], sys.argv[2:]
code = 0
try:
    if argv[0] == "--write-pool":
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[1])))
        import bench_scale
        bench_scale.write_pool(*argv[2:])
    else:
        from curate.cli import main
        sys.argv = ["curate", *argv]
        main()
except SystemExit as e:
    code = e.code or 0
s = status()
for k in peaks:
    peaks[k] = max(peaks[k], s[k])
json.dump({"VmHWM": s["VmHWM"], "peak_anon": peaks["RssAnon"], "peak_file": peaks["RssFile"], "code": code}, open(out, "w"))
"""


def write_pool(path: str, n: str, dim: str, seed: str, noise: str = "0.05", scores: str = "0") -> None:
    """Synthetic embed output: ``n`` unit vectors of ``dim`` dims in 10 classes, written as embed writes.
    ``scores`` "1": also random el2n, grand and rho columns, as a scored file (for --prune-alone)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.io.atomic import atomic_path
    from curate.io.parquet import ROW_GROUP_ROWS, WRITE_OPTIONS, embedding_column, with_provenance
    from curate.io.provenance import base_record

    n, dim, seed, noise, scores = int(n), int(dim), int(seed), float(noise), scores == "1"
    classes = 10
    centres = np.random.default_rng(12345).normal(0, 1, (classes, dim)).astype(np.float32)
    record = base_record("score" if scores else "embed")
    record.update({"inputs": [], "source": {"kind": "synthetic", "id_rule": "column id"}, "rows": n,
                   "embedding_model": {"name": "synthetic-gaussian-10", "sha256": "0" * 64, "dimension": dim,
                                       "normalize": True},
                   "config": {"synthetic": True, "seed": seed}, "skipped": [], "dropped_unlabelled": 0})
    fields = [("id", pa.string()), ("label", pa.string()), ("embedding", pa.list_(pa.float32(), dim))]
    if scores:
        fields += [("el2n", pa.float64()), ("grand", pa.float64()), ("rho", pa.float64())]
    schema = with_provenance(pa.schema(fields).empty_table(), record).schema
    rng = np.random.default_rng(seed)
    with atomic_path(Path(path)) as tmp, pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as writer:
        for s in range(0, n, ROW_GROUP_ROWS):
            m = min(ROW_GROUP_ROWS, n - s)
            y = rng.integers(0, classes, m)
            X = centres[y] + rng.normal(0, 1.2, (m, dim)).astype(np.float32)
            X /= np.linalg.norm(X, axis=1, keepdims=True)
            flip = rng.random(m) < noise
            y[flip] = rng.integers(0, classes, int(flip.sum()))
            ids = pa.array([f"doc-{i:09d}" for i in range(s, s + m)])
            labels = pa.array([f"class-{v}" for v in y])
            cols = [ids, labels, embedding_column(X)]
            if scores:
                cols += [pa.array(rng.random(m)), pa.array(rng.random(m) * 3), pa.array(rng.normal(size=m))]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))


def measure(args: list[str], work: Path) -> dict:
    """Run one step in a fresh process; its wall time and memory peaks (bytes)."""
    out = work / ".mem.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, str(out), *map(str, args)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    print(f"  {args[0]} {work.name}: {wall:.1f} s", file=sys.stderr, flush=True)  # progress of a long run
    mem = json.loads(out.read_text()) if out.exists() else {}
    out.unlink(missing_ok=True)
    if r.returncode != 0 or mem.get("code"):
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}")
    return {"wall_s": wall, **{k: mem[k] for k in ("VmHWM", "peak_anon", "peak_file")}}


PRUNE = ["--keep", "el2n in [q0.10, q0.90]", "--keep", "rho in [q0.05, q0.95]", "--per-class"]


def run_size(n: int, a, work: Path) -> dict[str, dict]:
    work.mkdir(parents=True, exist_ok=True)
    me = str(Path(__file__).resolve())
    if a.prune_alone:  # a synthetic scored file (random scores), then prune only
        scored = work / "scored.parquet"
        measure(["--write-pool", me, scored, n, a.dim, 1, 0.05, 1], work)
        return {"prune": measure(["prune", scored, *PRUNE, "-o", work / "pruned.parquet"], work)}
    pool, hold, il = work / "pool.parquet", work / "holdout.parquet", work / "il"
    scored, pruned, report = work / "scored.parquet", work / "pruned.parquet", work / "report.html"
    steps = {}
    steps["embed"] = measure(["--write-pool", me, pool, n, a.dim, 1], work)
    measure(["--write-pool", me, hold, a.holdout, a.dim, 2], work)
    steps["il"] = measure(["il", "train", hold, "-o", il, "--threads", a.threads], work)
    steps["score"] = measure(["score", pool, "--il", il, "-m", "el2n", "-m", "grand", "-m", "rho", "-K", a.K,
                              "--threads", a.threads, "-o", scored], work)
    pool.unlink()
    steps["prune"] = measure(["prune", scored, *PRUNE, "-o", pruned], work)
    pruned.unlink()
    if not a.skip_report:
        steps["report"] = measure(["report", scored, "-o", report], work)
    return steps


def gb(b: float) -> str:
    return f"{b / 1e9:6.2f}"


def table(results: dict[int, dict[str, dict]]) -> str:
    base = min(results)
    lines = [f"{'rows':>11} {'step':<7} {'wall s':>8} {'peak GB':>8} {'anon GB':>8} {'file GB':>8} {'peak / peak@' + format(base, ','):>16}"]
    for n, steps in sorted(results.items()):
        for step, m in steps.items():
            ratio = m["VmHWM"] / results[base][step]["VmHWM"]
            lines.append(f"{n:>11,} {step:<7} {m['wall_s']:8.1f} {gb(m['VmHWM']):>8} {gb(m['peak_anon']):>8} "
                         f"{gb(m['peak_file']):>8} {ratio:16.2f}")
    return "\n".join(lines)


def _pread_take(E, idx):
    """The alternative to curate's gather: one pread per row, in file order, into the result."""
    import numpy as np

    flat = idx.reshape(-1)
    out = np.empty((flat.size, E.d), np.float32)
    size = E.d * 4
    buf = memoryview(out).cast("B")
    order = np.argsort(flat, kind="stable")
    fd = os.open(E.path, os.O_RDONLY)
    try:
        for j, offset in zip(order.tolist(), (flat[order] * size).tolist()):
            os.preadv(fd, [buf[j * size:(j + 1) * size]], offset)
    finally:
        os.close(fd)
    return out


def _before_take(E, idx, budget: int = 512 * 2**20, folio: int = 2 * 2**20):
    """curate's sliced map as it was before 2026-11-23: each slice's pages dropped by advising the
    whole mapping (the kernel then walks the whole file's page tables, once per slice)."""
    import mmap

    import numpy as np

    if E._view is None:
        E.take(idx[:1, :1])  # maps the file as curate does
    view, m = E._view, E._map
    flat = idx.reshape(-1)
    out = np.empty((flat.size, E.d), np.float32)
    order = np.argsort(flat, kind="stable")
    rows = flat[order]
    f_of = rows * (E.d * 4) // folio
    touched = np.cumsum(np.r_[True, f_of[1:] != f_of[:-1]])
    cap = max(1, budget // folio)
    cuts = np.searchsorted(touched, np.arange(cap, int(touched[-1]), cap), side="right")
    for s, e in zip(np.r_[0, cuts], np.r_[cuts, rows.size]):
        out[order[s:e]] = np.take(view, rows[s:e], axis=0)
        m.madvise(mmap.MADV_DONTNEED)
    return out


def access(a) -> str:
    """Gathers of K x b random rows from the spilled matrix: curate's (a memory map read in slices
    of the budget, pages dropped after each), a pread per row, a memory map of the whole file
    (np.memmap, what one would write first; its pages stay resident), and Parquet row groups
    decoded (no spilled matrix)."""
    import numpy as np
    import pyarrow.parquet as pq

    from curate.io.matrix import Embeddings
    from curate.io.parquet import embedding_array

    work = Path(a.workdir) / "access"
    work.mkdir(parents=True, exist_ok=True)
    pool = work / "pool.parquet"
    write_pool(str(pool), str(a.access_rows), str(a.dim), "3")
    pf = pq.ParquetFile(pool)
    starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    rng = np.random.default_rng(0)
    names = ["curate", "before", "pread", "whole map", "parquet"]
    times: dict[str, list[float]] = {k: [] for k in names}
    # The budget at its smallest, so every file here is read as one too large for it is.
    with Embeddings.from_parquet(pool, map_budget=2 * 2**20) as E:
        whole = np.memmap(E.path, dtype=np.float32, mode="r", shape=(E.n, E.d))
        for rep in range(a.access_repeats):
            idx = rng.integers(0, E.n, (a.K, a.access_batch))
            for name in [k for k in names if not (k == "parquet" and a.access_skip_parquet)]:  # interleaved
                t = time.perf_counter()
                if name == "curate":
                    got = E.take(idx)
                elif name == "pread":
                    other = _pread_take(E, idx)
                elif name == "before":
                    other = _before_take(E, idx)
                elif name == "whole map":
                    other = np.asarray(whole[idx.reshape(-1)])
                else:
                    groups = np.unique(np.searchsorted(starts, idx.reshape(-1), side="right") - 1)
                    part = pf.read_row_groups(groups.tolist(), columns=["embedding"])
                    mat = embedding_array(part.column(0))
                    offset = np.concatenate([[0], np.cumsum(starts[groups + 1] - starts[groups])])
                    where = {g: offset[i] - starts[g] for i, g in enumerate(groups)}
                    flat = idx.reshape(-1)
                    gi = np.searchsorted(starts, flat, side="right") - 1
                    other = mat[flat + np.array([where[g] for g in gi])]
                times[name].append(time.perf_counter() - t)
                if name != "curate":
                    np.testing.assert_array_equal(got.reshape(-1, a.dim), other)
        del whole
    shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    rows = a.K * a.access_batch
    lines = [f"random gathers of {a.K} x {a.access_batch} rows from {a.access_rows:,} x {a.dim} "
             f"({a.access_repeats} repeats, interleaved; {rows * 2 * 2**20 / (a.access_rows * a.dim * 4):.1f} rows "
             "per 2 MiB of file on average)"]
    for k in [k for k in names if times[k]]:
        lines.append(f"  {k:<11} median {med[k] * 1e3:9.2f} ms  {med[k] / rows * 1e6:7.2f} us/row  "
                     f"x curate {med[k] / med['curate']:6.2f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000000,3000000,10000000")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--holdout", type=int, default=20000)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=str(HERE / "out" / "scale"))
    p.add_argument("--keep", action="store_true", help="keep each size's files")
    p.add_argument("--results", default=str(HERE / "results" / "bench_scale.txt"))
    p.add_argument("--skip-report", action="store_true", help="embed, il, score and prune only")
    p.add_argument("--prune-alone", action="store_true",
                   help="only prune, on a synthetic scored file of each size (random scores); e.g. --dim 16")
    p.add_argument("--access", action="store_true")
    p.add_argument("--access-rows", type=int, default=200000)
    p.add_argument("--access-repeats", type=int, default=10)
    p.add_argument("--access-batch", type=int, default=128, help="rows per head in one gather (K x this)")
    p.add_argument("--access-skip-parquet", action="store_true", help="leave out the (slow) Parquet variant")
    a = p.parse_args()
    for name in ("access_rows", "access_repeats", "access_batch", "K", "dim", "holdout", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(a, name)}: expected a whole number >= 1")
    stamp = f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs"
    if a.access:
        text = access(a)
        print(text)
        with open(a.results, "a") as f:
            f.write(f"{stamp}\n{text}\n\n")
        return
    results: dict[int, dict[str, dict]] = {}
    for n in (int(s) for s in a.sizes.split(",")):
        work = Path(a.workdir) / str(n)
        try:
            results[n] = run_size(n, a, work)
        finally:
            if not a.keep:
                shutil.rmtree(work, ignore_errors=True)
        text = table(results)
        print(text, flush=True)
        with open(a.results, "a") as f:
            what = "prune alone" if a.prune_alone else f"K {a.K}, threads {a.threads}, holdout {a.holdout}"
            f.write(f"{stamp}; dim {a.dim}, {what}; rows {n:,} done\n{text}\n\n")


if __name__ == "__main__":
    main()
