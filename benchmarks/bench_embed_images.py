"""Image embedding speed: main's eager PyTorch path vs the ONNX Runtime path, at 64 and 224 px.

Protocol: N small real images (scikit-learn's 8x8 digit scans written as PNGs, cycled to N),
embedded with EfficientNet-Lite0 at each --size by three arms, interleaved A B C A B C so that
drifts in machine load hit every arm alike; every run is a fresh process (peak RSS is its own):
- old: main's code before this change, kept here verbatim in spirit: decode and preprocess a
  batch of 64, one eager ``extract_features(...).mean((2, 3))`` over the whole batch;
- new: the same loop through ``curate.embed.image.ImageEncoder`` (auto backend: ONNX Runtime,
  forward in pixel-bounded chunks), the export already cached (its one-off cost is shown apart);
- cli: ``curate embed IMAGES --image-size S`` end to end (process start, model load, writing).
Images/s of old and new count the embedding loop (decode + preprocess + forward), not the model
load. The table shows medians, the new/old ratio, peak RSS, and the minimum cosine similarity of
new vs old features over all N images.

    python benchmarks/bench_embed_images.py [--images 2000] [--sizes 64 224] [--repeats 2]

Expected run time on a quiet 2-core machine: about 6-9 minutes at the defaults (main's path at
224 px, 100-200 s a run, is most of it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "images"
BATCH = 64  # curate embed's default --batch-size


def image_folder(n: int) -> Path:
    """``n`` PNGs laid out root/<digit>/<i>.png from scikit-learn's digits (cycled past 1,797)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    root = OUT / f"digits-{n}"
    if (root / ".done").exists():
        return root
    d = load_digits()
    for i in range(n):
        k = i % len(d.images)
        folder = root / str(d.target[k])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[k] * (255 / 16)).astype(np.uint8), mode="L").save(folder / f"{i:05d}.png")
    (root / ".done").write_text("")
    return root


def _paths(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.png"))


def child(arm: str, root: Path, size: int, features_out: Path) -> dict:
    """One measured run in this (fresh) process; features saved to ``features_out`` (.npy)."""
    import numpy as np
    import torch

    from curate.embed.image import ImageEncoder, load_model, preprocess

    torch.set_num_threads(os.cpu_count() or 1)  # what `curate embed` does without --threads
    paths = _paths(root)
    t0 = time.perf_counter()
    if arm == "old":
        model = load_model()

        def features(batch):
            with torch.inference_mode():
                return model.extract_features(torch.from_numpy(batch)).mean(dim=(2, 3)).numpy().astype(np.float32)
    else:
        features = ImageEncoder(size, BATCH).features
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = [features(np.stack([preprocess(p, size) for p in paths[s:s + BATCH]])) for s in range(0, len(paths), BATCH)]
    seconds = time.perf_counter() - t0
    np.save(features_out, np.concatenate(out))
    return {"setup_s": setup, "seconds": seconds, "images_per_s": len(paths) / seconds,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_arm(arm: str, root: Path, size: int, work: Path) -> dict:
    if arm == "cli":
        out = work / f"cli-{size}.parquet"
        cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "curate", "embed", str(root), "--image-size", str(size),
               "-o", str(out), "--overwrite"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        n = len(_paths(root))
        return {"seconds": dt, "images_per_s": n / dt, "peak_mb": int(r.stderr.strip().splitlines()[-1]) / 1024}
    cmd = [sys.executable, __file__, "--child", arm, "--root", str(root), "--sizes", str(size), "--features",
           str(work / f"{arm}-{size}.npy")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def min_cosine(a_path: Path, b_path: Path) -> float:
    import numpy as np

    a, b = np.load(a_path).astype(np.float64), np.load(b_path).astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--features", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root, args.sizes[0], args.features)))
        return

    root = image_folder(args.images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for size in args.sizes:
            warm = run_arm("new", root, size, work)  # exports and caches the ONNX model if absent
            print(f"{size} px: first new-path setup {warm['setup_s']:.1f} s (export if not cached)", file=sys.stderr)
            runs: dict[str, list[dict]] = {"old": [], "new": [], "cli": []}
            for rep in range(args.repeats):
                for arm in runs:
                    runs[arm].append(run_arm(arm, root, size, work))
                    print(f"{size} px rep {rep} {arm}: {runs[arm][-1]}", file=sys.stderr)
            med = {arm: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for arm, rs in runs.items()}
            rows.append((size, med, min_cosine(work / f"new-{size}.npy", work / f"old-{size}.npy")))

    text = ("| size | old (main, eager torch) img/s | new (ONNX Runtime) img/s | **new / old** | `curate embed` img/s "
            "(end to end) | peak RSS old / new / cli (MB) | min cosine new vs old |\n|---|---|---|---|---|---|---|\n")
    for size, m, cos in rows:
        text += (f"| {size} px | {m['old']['images_per_s']:.1f} | {m['new']['images_per_s']:.1f} | "
                 f"**{m['new']['images_per_s'] / m['old']['images_per_s']:.2f}x** | {m['cli']['images_per_s']:.1f} "
                 f"({m['cli']['seconds']:.1f} s) | {m['old']['peak_mb']:.0f} / {m['new']['peak_mb']:.0f} / "
                 f"{m['cli']['peak_mb']:.0f} | {cos:.6f} |\n")
    print(text)
    cmd = f"python benchmarks/bench_embed_images.py --images {args.images} --sizes {' '.join(map(str, args.sizes))} --repeats {args.repeats}"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_embed_images.md").write_text(
        f"# Image embedding speed\n\n{datetime.date.today()}, `{cmd}`, {os.cpu_count()} CPU cores, medians of "
        f"{args.repeats} interleaved repeats, {args.images:,} digit PNGs (8x8, upscaled).\n\n" + text)


if __name__ == "__main__":
    main()
