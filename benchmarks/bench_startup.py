"""CLI start-up: wall time of `curate ARGS` for two checkouts, interleaved (A B A B ...), medians and ratio.

    python benchmarks/bench_startup.py BEFORE_REPO AFTER_REPO [--repeats 5]

Each run is a fresh `python -m curate ...` with PYTHONPATH set to the checkout; prints one line per
command: median seconds of each side and after/before. About 3 minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = [["--help"], ["embed", "--help"], ["score", "--help"], ["report", "--help"], ["prune", "--help"],
            ["il", "train", "--help"], ["train", "--steps", "x", "p.parquet", "-o", "o"],
            ["score", "p.parquet", "-o", "o", "-m", "el2n", "--seeds", "0"]]


def once(repo: str, args: list[str]) -> float:
    t = time.perf_counter()
    # cwd too: `python -m` puts the working directory ahead of PYTHONPATH, so run from elsewhere
    # both sides would time the checkout the benchmark was started in.
    subprocess.run([sys.executable, "-m", "curate", *args], env={**os.environ, "PYTHONPATH": repo}, cwd=repo,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    for args in COMMANDS:
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(a.repeats):
            times["before"].append(once(a.before, args))
            times["after"].append(once(a.after, args))
        b, f = statistics.median(times["before"]), statistics.median(times["after"])
        print(f"curate {' '.join(args):<40} before {b:6.2f} s   after {f:6.2f} s   after/before {f / b:5.2f}", flush=True)


if __name__ == "__main__":
    main()
