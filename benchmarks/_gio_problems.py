"""Seeded GIO problems: unit-norm embeddings in clusters, like sentence-transformer outputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def clustered(n_pool: int, n_target: int, d: int = 384, clusters: int = 20, target_modes: int = 4,
              spread: float = 0.6, seed: int = 0, sink: Callable[[np.ndarray], None] | None = None,
              rows: int = 65536):
    """Pool: ``clusters`` clusters; target: the first ``target_modes`` of them, with mode shares
    1/2, 1/4, 1/8, ... (the last taking the rest). Returns pool, target, pool_cluster, target_mode.

    Drawn ``rows`` rows at a time (the same values as one draw: the generator's stream is
    sequential), so memory stays at the float32 result; with ``sink`` each pool block is handed
    to it instead of kept, and the returned pool is None (a 1M-row pool written to Parquet)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(labels, sink=None):
        out = None if sink else np.empty((len(labels), d), dtype=np.float32)
        for s in range(0, len(labels), rows):
            pts = centres[labels[s:s + rows]] + spread * rng.normal(size=(len(labels[s:s + rows]), d)) / np.sqrt(d)
            block = (pts / np.linalg.norm(pts, axis=1, keepdims=True)).astype(np.float32)
            if sink:
                sink(block)
            else:
                out[s:s + len(block)] = block
        return out

    pool_lab = rng.integers(0, clusters, n_pool)
    shares = np.array([0.5 ** (i + 1) for i in range(target_modes)])
    shares[-1] += 1 - shares.sum()
    tgt_lab = rng.choice(target_modes, n_target, p=shares)
    return draw(pool_lab, sink), draw(tgt_lab), pool_lab, tgt_lab
