"""Threads on a shared machine: `il train` and `score` with one thread per core (torch's default)
vs `--threads 1`, while other processes keep every core busy.

Protocol: synthetic Gaussian class clusters (default 444 rows x 384 dimensions, 4 classes, the
size of the case that was slow in issue 14), written as `curate embed` would. One busy-loop
process per core (`--busy`, default: every core) runs for the whole measurement. Each command
runs `--repeats` times per arm, interleaved A B A B so that drifts in load hit both arms alike;
the table shows medians, the ratio default/one-thread, and whether the outputs were identical.

    python benchmarks/bench_threads.py [--rows 444] [--dim 384] [--repeats 5] [--busy N]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from score_helpers import clusters, write_pool  # noqa: E402

CURATE = [sys.executable, "-m", "curate"]


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def _digest(path: Path) -> str:
    """Hash of the results: weights of a model directory, or a Parquet file's data (its footer records
    the thread count and command line, which differ between arms by design)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    h = hashlib.sha256()
    if path.is_dir():
        h.update((path / "model.safetensors").read_bytes())
    else:
        sink = pa.BufferOutputStream()
        table = pq.read_table(path).replace_schema_metadata(None)
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()[:12]


def _timed(args: list[str], out: Path, env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([*CURATE, *args, "-o", str(out), "--overwrite"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"curate {' '.join(args)} failed: {r.stderr.strip()}")
    return wall, _digest(out)


def _supports_threads(command: str) -> bool:
    r = subprocess.run([*CURATE, command, "--help"], capture_output=True, text=True)
    return "--threads" in r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=444)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--busy", type=int, default=os.cpu_count())
    ap.add_argument("--il-epochs", type=int, default=100)
    ap.add_argument("--score-seeds", type=int, default=10)
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    X, y = clusters(a.rows, d=a.dim, classes=4, seed=0, spread=3.0)
    pool = write_pool(work / "pool.parquet", X, y)
    hold = write_pool(work / "hold.parquet", *clusters(a.rows, d=a.dim, classes=4, seed=1, spread=3.0))
    il_dir = work / "il"
    subprocess.run([*CURATE, "il", "train", str(hold), "-o", str(il_dir), "--epochs", "5"], check=True, capture_output=True)

    cases = {
        "il train": (["il", "train", str(hold), "--epochs", str(a.il_epochs)], True),
        "score (el2n, grand, rho)": (["score", str(pool), "--il", str(il_dir), "-m", "el2n", "-m", "grand", "-m", "rho",
                                      "-K", str(a.score_seeds)], _supports_threads("score")),
    }
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(a.busy)]
    for p in spinners:
        p.start()
    rows = []
    try:
        for name, (args, has_flag) in cases.items():
            times = {"default": [], "one": []}
            digests = {"default": set(), "one": set()}
            one_env = None if has_flag else {**os.environ, "OMP_NUM_THREADS": "1"}
            one_args = [*args, "--threads", "1"] if has_flag else args
            all_args = [*args, "--threads", str(os.cpu_count())] if has_flag else args
            for _ in range(a.repeats):
                for arm, (aa, env) in (("default", (all_args, None)), ("one", (one_args, one_env))):
                    out = work / (f"il-{arm}" if name == "il train" else f"scored-{arm}.parquet")
                    wall, dig = _timed(aa, out, env)
                    times[arm].append(wall)
                    digests[arm].add(dig)
            md, m1 = statistics.median(times["default"]), statistics.median(times["one"])
            rows.append((name, md, m1, md / m1, digests["default"] == digests["one"] and len(digests["one"]) == 1,
                         "--threads 1" if has_flag else "OMP_NUM_THREADS=1 (no --threads on this command)",
                         times))
    finally:
        stop.set()
        for p in spinners:
            p.join()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{a.busy} busy processes on {os.cpu_count()} cores; {a.rows} rows x {a.dim} d; {a.repeats} runs per arm, interleaved\n")
    print(f"| command | {os.cpu_count()} threads (s, median) | one thread (s, median) | ratio | same results | one-thread arm |")
    print("|---|---|---|---|---|---|")
    for name, md, m1, ratio, same, how, _ in rows:
        print(f"| {name} | {md:.2f} | {m1:.2f} | {ratio:.2f} | {'yes' if same else 'no'} | {how} |")
    for name, *_, times in rows:
        print(f"\n{name}: default {['%.2f' % t for t in times['default']]}, one {['%.2f' % t for t in times['one']]}",
              file=sys.stderr)
    print(f"\n<sub>{datetime.date.today()}, `python benchmarks/bench_threads.py --rows {a.rows} --dim {a.dim} "
          f"--repeats {a.repeats} --busy {a.busy}`.</sub>")


if __name__ == "__main__":
    main()
