"""GIO: curate vs the reference package (grad-info-opt 0.1.2) on the same seeded problems.

Problems: unit-norm embeddings in 50 clusters, d = 384, a 2,000-point target drawn from 4 of
them; pools of 10k, 50k and 200k. Both run with the reference's defaults and the same seed.
The reference needs several seconds per selected point, so it runs only its first few picks
(--ref-picks); curate runs the full default selection (up to 101 picks). Reported: seconds per
selected point for each and their ratio, the overlap of the first picks, the KL after those
picks, and peak memory.

Memory (curate only, each run in its own process; peak RSS is VmHWM, reset after the inputs are
in memory, so it is the selection's own plus the interpreter's): the quantised mode on a
1M-candidate pool streamed from a Parquet file (--clusters 1000), and the knn mode (budget 50
picks, then every candidate's gain) at two pool sizes, each next to the formula's prediction
(``gio.quantised_memory_bytes``, ``gio_knn.memory_bytes``, plus the process's RSS before the run).

    python benchmarks/bench_gio.py [--ref-python /work/gio-ref-venv/bin/python] [--sizes 10000 50000 200000]
        [--million 1000000] [--knn-sizes 200000 1000000]

Without --ref-python (or if it cannot import GIO) only curate's side is measured. --sizes 0,
--million 0 or --knn-sizes 0 skip a part.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from curate.scores.gio import GioConfig  # noqa: E402


def curate_run(problem: dict, config: GioConfig) -> dict:
    """In a child process, so peak memory is this run's own."""
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(HERE)!r})
import numpy as np
from _gio_problems import clustered
from curate.scores.gio import GioConfig, score_gio
pool, target, _, _ = clustered(**{problem!r})
cfg = GioConfig(**{config.to_dict()!r})
t0 = time.perf_counter()
cols, prov = score_gio(pool, target, cfg)
seconds = time.perf_counter() - t0
order = np.argsort(np.where(cols['gio_order'] < 0, 1 << 30, cols['gio_order']), kind='stable')[: int(cols['gio_selected'].sum())]
print(json.dumps({{"order": order.tolist(), "kl": prov["kl_trajectory"][1:], "seconds": seconds,
                  "stop": prov["stop_reason"], "quantised": prov.get("quantised"),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


MEMORY_CHILD = r"""
import json, sys, time
sys.path.insert(0, {here!r})
import faiss, numpy as np, pyarrow.parquet  # loaded before the baseline is read
from _gio_problems import clustered
from curate.scores.gio import GioConfig, quantised_memory_bytes, score_gio
from curate.scores.gio_knn import memory_bytes


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024


spec = {spec!r}
base = status("VmRSS")
if spec["mode"] == "quantised":
    pool, target = spec["pool"], np.load(spec["target"])
    predicted = quantised_memory_bytes(spec["n"], spec["clusters"], spec["d"])
    cfg = GioConfig(clusters=spec["clusters"])
else:
    pool, target, _, _ = clustered(**spec["problem"])
    predicted = memory_bytes(spec["n"], len(target), spec["d"])
    cfg = GioConfig(budget=spec["budget"])
open("/proc/self/clear_refs", "w").write("5")  # peak RSS from here on
t0 = time.perf_counter()
cols, prov = score_gio(pool, target, cfg)
print(json.dumps({{"seconds": time.perf_counter() - t0, "peak": status("VmHWM"), "base": base, "predicted": predicted,
                  "selected": int(cols["gio_selected"].sum()), "stop": prov["stop_reason"],
                  "evaluation": prov.get("evaluation"), "quantised": prov.get("quantised")}}))
"""


def memory_run(spec: dict) -> dict:
    code = MEMORY_CHILD.format(here=str(HERE), spec=spec)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"memory run {spec['mode']} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_pool(path: Path, problem: dict) -> Path:
    """The problem's pool as a Parquet file (id, embedding), written block by block; returns the target's .npy."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from _gio_problems import clustered
    from curate.io.parquet import embedding_column

    writer, start = None, 0

    def sink(block):
        nonlocal writer, start
        table = pa.table({"id": pa.array([f"p{i}" for i in range(start, start + len(block))]),
                          "embedding": embedding_column(block)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        start += len(block)

    _, target, _, _ = clustered(**problem, sink=sink)
    writer.close()
    np.save(path.with_suffix(".target.npy"), target)
    return path.with_suffix(".target.npy")


def memory_part(args) -> str:
    gb = 1024 ** 3
    lines = ["| mode | candidates | peak RSS (GiB) | predicted: formula + RSS before (GiB) | RSS before the run (GiB) | wall (s) | selected |",
             "|---|---|---|---|---|---|---|"]

    def row(label, n, r):
        lines.append(f"| {label} | {n:,} | {r['peak'] / gb:.2f} | {(r['predicted'] + r['base']) / gb:.2f} | "
                     f"{r['base'] / gb:.2f} | {r['seconds']:.0f} | {r['selected']:,} |")
        print(json.dumps({"mode": label, "n": n, **r}), file=sys.stderr)

    if args.million:
        problem = dict(n_pool=args.million, n_target=2000, d=384, clusters=50, target_modes=4, spread=0.6, seed=0)
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            pool = Path(tmp) / "pool.parquet"
            target = write_pool(pool, problem)
            r = memory_run({"mode": "quantised", "pool": str(pool), "target": str(target), "n": args.million,
                            "clusters": args.clusters, "d": 384})
        row(f"quantised, --clusters {args.clusters}, pool streamed from Parquet", args.million, r)
    for n in [n for n in args.knn_sizes if n]:
        problem = dict(n_pool=n, n_target=2000, d=384, clusters=50, target_modes=4, spread=0.6, seed=0)
        r = memory_run({"mode": "knn", "problem": problem, "n": n, "d": 384, "budget": args.knn_budget})
        row(f"knn, budget {args.knn_budget}, {r['evaluation']}, pool in memory", n, r)
    return "\n".join(lines)


def ref_run(python: str, problem: dict, picks: int) -> dict | None:
    arg = json.dumps({"problem": problem, "seed": 0, "max_iter": picks - 1})
    out = subprocess.run([python, str(HERE / "_gio_reference_run.py"), arg], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"reference failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref-python", default="/work/gio-ref-venv/bin/python")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    ap.add_argument("--ref-picks", type=int, default=3)
    ap.add_argument("--million", type=int, default=1_000_000, help="pool size of the quantised run (0 to skip)")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--knn-sizes", type=int, nargs="+", default=[200_000, 1_000_000], help="pool sizes of the knn memory runs")
    ap.add_argument("--knn-budget", type=int, default=50)
    ap.add_argument("--workdir", default=None, help="where the quantised run's Parquet pool is written (1.6 GB at 1M)")
    args = ap.parse_args()
    have_ref = Path(args.ref_python).exists()
    rows = []
    for n in [n for n in args.sizes if n]:
        problem = dict(n_pool=n, n_target=2000, d=384, clusters=50, target_modes=4, spread=0.6, seed=0)
        cur = curate_run(problem, GioConfig(estimator="reference"))  # the default is knn since 2026-11-22
        ref = ref_run(args.ref_python, problem, args.ref_picks) if have_ref else None
        row = {"pool": n, "curate_picks": len(cur["order"]), "curate_s_per_pick": cur["seconds"] / max(1, len(cur["order"])),
               "curate_mb": cur["peak_rss_mb"], "stop": cur["stop"]}
        if ref:
            p = len(ref["order"])
            row.update({"ref_picks": p, "ref_s_per_pick": ref["seconds"] / max(1, p), "ref_mb": ref["peak_rss_mb"],
                        "same_first_picks": cur["order"][:p] == ref["order"],
                        "overlap": len(set(cur["order"][:p]) & set(ref["order"])) / max(1, p),
                        "kl_curate": cur["kl"][p - 1] if len(cur["kl"]) >= p else None, "kl_ref": ref["kl"][-1] if ref["kl"] else None})
            row["speedup"] = row["ref_s_per_pick"] / row["curate_s_per_pick"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    lines = ["| pool | curate picks | curate s/pick | reference s/pick (first picks) | speed-up | same picks, same order | KL after those picks (curate / reference) | peak MB (curate / reference) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "ref_s_per_pick" in r:
            lines.append(f"| {r['pool']:,} | {r['curate_picks']} | {r['curate_s_per_pick']:.4f} | {r['ref_s_per_pick']:.2f} ({r['ref_picks']}) | "
                         f"{r['speedup']:.0f}x | {'yes' if r['same_first_picks'] else 'no'} ({r['overlap']:.0%}) | "
                         f"{r['kl_curate']:.4f} / {r['kl_ref']:.4f} | {r['curate_mb']:.0f} / {r['ref_mb']:.0f} |")
        else:
            lines.append(f"| {r['pool']:,} | {r['curate_picks']} | {r['curate_s_per_pick']:.4f} | not run | | | | {r['curate_mb']:.0f} / |")
    command = "python benchmarks/bench_gio.py " + " ".join(sys.argv[1:])
    if rows:
        text = "\n".join(lines)
        print(text)
        (HERE / "results" / "bench_gio.md").write_text(
            f"# GIO: curate vs grad-info-opt 0.1.2\n\n{datetime.date.today()}, `{command.strip()}`, 2 CPU cores, "
            "target 2,000 points, d = 384, reference defaults, seed 0. The reference's seconds per pick are over its first "
            f"{args.ref_picks} picks (the first includes its 150-step warm-up round and JAX compilation); curate's over its whole run.\n\n" + text + "\n")
    if args.million or any(args.knn_sizes):
        text = memory_part(args)
        print(text)
        (HERE / "results" / "bench_gio_memory.md").write_text(
            f"# GIO memory\n\n{datetime.date.today()}, `{command.strip()}`, 2 CPU cores, target 2,000 points, d = 384, seed 0. "
            "Peak RSS: VmHWM of a fresh process, reset once the inputs are in memory (the knn mode's pool, 4 n d bytes, "
            "is counted in both the peak and the formula).\n\n" + text + "\n")

if __name__ == "__main__":
    main()
