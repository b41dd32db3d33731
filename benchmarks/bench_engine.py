"""Engines side by side: `curate embed` rows/s with the local engine (1 worker), worker processes
(2) and Ray (2 actors on a private local cluster), on the same input; and Ray's own costs.

Each embed is a fresh `python -m curate embed` process, so every engine pays its start-up (the
model load in each worker, and for Ray the cluster start) as a user does. Runs are interleaved
(local, process, ray, local, process, ray, ...) so all see the same machine load; rows/s and
ratios are of medians. Torch runs 1 thread per worker, so 2 workers use the 2 cores.

Ray's costs, measured in a separate process: start-up (``ray.init`` of a local 2-CPU cluster)
and the per-task overhead of ``RayExecutor.map`` on an empty task (time from the first result
to the last over M tasks, / (M - 1), so starting the actors is not counted), next to the
process pool's on the same empty task.

    python benchmarks/bench_engine.py [--rows 4000] [--runs 3] [--tasks 400]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "engine"
sys.path.insert(0, str(HERE))

from bench_embed import make_texts  # noqa: E402  (benchmarks/ is not a package)

ENGINES = {
    "local, 1 worker": ["--engine", "local", "--workers", "1"],
    "process, 2 workers": ["--engine", "process", "--workers", "2"],
    "ray, 2 workers": ["--engine", "ray", "--workers", "2"],
}
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

OVERHEAD = r"""
import json, sys, time
from curate.engine.process import ProcessExecutor
from curate.engine.ray import RayExecutor

def per_task(ex, m):
    # abs: an empty task that pickles by reference in both pools. Timed from the first result to
    # the last, so starting the workers (seconds, and noisy) is not counted.
    stamps = [time.perf_counter() for _ in ex.map(abs, range(m))]
    return (stamps[-1] - stamps[0]) / (m - 1)

if __name__ == "__main__":
    m, runs = int(sys.argv[1]), int(sys.argv[2])
    import ray
    starts, ray_task, proc_task = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        starts.append(time.perf_counter() - t0)
        ray_task.append(per_task(RayExecutor(2, cpus_per_worker=0.5), m))
        ray.shutdown()
        proc_task.append(per_task(ProcessExecutor(2), m))
    print(json.dumps({"start": starts, "ray_task": ray_task, "process_task": proc_task}))
"""


def embed(texts: Path, out: Path, engine: list[str], shard: int) -> float:
    cmd = [sys.executable, "-m", "curate", "embed", str(texts), "--text-column", "text", "--threads", "1",
           "--shard-size", str(shard), "--overwrite", "-o", str(out), *engine]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4000, help="texts to embed (16-word BBC News paragraphs)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=400, help="empty tasks for the per-task overhead")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/bench_engine.md")
    args = ap.parse_args()
    texts = make_texts(args.rows, OUT / f"short-{args.rows}.jsonl", words=16)
    shard = max(1, args.rows // 8)  # 8 shards: both workers stay busy to the end
    times: dict[str, list[float]] = {k: [] for k in ENGINES}
    outputs = {}
    for i in range(args.runs):
        for name, engine in ENGINES.items():
            out = OUT / f"{engine[1]}.parquet"
            times[name].append(embed(texts, out, engine, shard))
            outputs[name] = out
            print(f"run {i}: {name}: {times[name][-1]:.1f}s", file=sys.stderr, flush=True)
    import pyarrow.parquet as pq

    first = pq.read_table(outputs["local, 1 worker"])
    same = all(pq.read_table(p).equals(first) for p in outputs.values())
    r = subprocess.run([sys.executable, "-c", OVERHEAD, str(args.tasks), str(args.runs)], capture_output=True, text=True,
                       env={**ENV, "PYTHONPATH": os.pathsep.join([str(HERE.parent), ENV.get("PYTHONPATH", "")])})
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    cost = json.loads(r.stdout.strip().splitlines()[-1])
    base = statistics.median(times["local, 1 worker"])
    rows = "\n".join(
        f"| {name} | {args.rows / statistics.median(t):.1f} | {statistics.median(t):.1f} | {base / statistics.median(t):.2f} "
        f"| {', '.join(f'{x:.1f}' for x in t)} |" for name, t in times.items())
    table = (
        f"| engine ({args.rows} texts, {shard}-row shards) | rows/s | median s | speed-up vs local 1 | runs (s) |\n"
        f"|---|---|---|---|---|\n{rows}\n\n"
        f"Outputs identical across engines: {same}\n\n"
        f"| Ray cost | median | runs |\n|---|---|---|\n"
        f"| start-up of a local 2-CPU cluster (s) | {statistics.median(cost['start']):.2f} "
        f"| {', '.join(f'{x:.2f}' for x in cost['start'])} |\n"
        f"| per empty task, Ray actor pool (ms) | {1e3 * statistics.median(cost['ray_task']):.2f} "
        f"| {', '.join(f'{1e3 * x:.2f}' for x in cost['ray_task'])} |\n"
        f"| per empty task, process pool (ms) | {1e3 * statistics.median(cost['process_task']):.2f} "
        f"| {', '.join(f'{1e3 * x:.2f}' for x in cost['process_task'])} |\n")
    print(table)
    if args.write:
        (HERE / "results" / "bench_engine.md").write_text(
            f"# Engines: local, process and Ray on one machine\n\n{datetime.date.today()}, "
            f"`python benchmarks/bench_engine.py --rows {args.rows} --runs {args.runs} --tasks {args.tasks}`, "
            f"all-MiniLM-L6-v2, 1 torch thread per worker, {os.cpu_count()} CPU cores; each embed a fresh process "
            "(model load and, for Ray, cluster start included), runs interleaved.\n\n" + table)


if __name__ == "__main__":
    main()
