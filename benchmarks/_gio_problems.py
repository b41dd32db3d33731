"""Seeded GIO problems: unit-norm embeddings in clusters, like sentence-transformer outputs."""

from __future__ import annotations

import numpy as np


def clustered(n_pool: int, n_target: int, d: int = 384, clusters: int = 20, target_modes: int = 4,
              spread: float = 0.6, seed: int = 0):
    """Pool: ``clusters`` clusters; target: the first ``target_modes`` of them, with mode shares
    1/2, 1/4, 1/8, ... (the last taking the rest). Returns pool, target, pool_cluster, target_mode."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(labels):
        pts = centres[labels] + spread * rng.normal(size=(len(labels), d)) / np.sqrt(d)
        return (pts / np.linalg.norm(pts, axis=1, keepdims=True)).astype(np.float32)

    pool_lab = rng.integers(0, clusters, n_pool)
    shares = np.array([0.5 ** (i + 1) for i in range(target_modes)])
    shares[-1] += 1 - shares.sum()
    tgt_lab = rng.choice(target_modes, n_target, p=shares)
    return draw(pool_lab), draw(tgt_lab), pool_lab, tgt_lab
