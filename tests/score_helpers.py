"""Synthetic embedding files for the scoring tests: Gaussian class clusters, written as curate does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.io.parquet import embedding_column, write_table


def clusters(n: int, d: int = 16, classes: int = 3, seed: int = 0, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (classes, d))
    y = np.arange(n) % classes
    X = centres[y] + rng.normal(0, spread, (n, d))
    return X.astype(np.float32), y


def write_pool(path: Path, X: np.ndarray, labels=None, ids=None, model_sha: str = "a" * 64) -> Path:
    n = len(X)
    cols = {"id": pa.array(ids or [f"ex-{i:05d}" for i in range(n)], pa.string())}
    if labels is not None:
        cols["label"] = pa.array([f"c{v}" if not isinstance(v, str) else v for v in labels])
    cols["embedding"] = embedding_column(X)
    record = {"step": "embed", "embedding_model": {"name": "synthetic", "sha256": model_sha, "dimension": X.shape[1]}}
    write_table(pa.table(cols), path, record)
    return path
