"""The pinned score run: a tiny pool, IL model and target, scored by every method with --std.

``tests/fixtures/score_pinned.json`` holds the sha256 of each score column's bytes from the code
before the score-method redesign; the same command must keep giving the same bytes on CPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from conftest import run
from score_helpers import clusters, write_pool

COLUMNS = ("el2n", "el2n_std", "grand", "grand_std", "rho", "target_loss", "il_loss", "target_loss_std",
           "gio_selected", "gio_order", "gio_score")


def pinned_run(d: Path) -> dict[str, str]:
    X, y = clusters(60, d=8, classes=3, seed=7, spread=1.5)
    Xh, yh = clusters(45, d=8, classes=3, seed=8, spread=1.5)
    pool = write_pool(d / "pool.parquet", X, y)
    holdout = write_pool(d / "holdout.parquet", Xh, yh, ids=[f"h{i}" for i in range(45)])
    r = run("il", "train", holdout, "-o", d / "il", "--epochs", "5", "--hidden", "8")
    assert r.exit_code == 0, r.stderr
    out = d / "scored.parquet"
    r = run("score", pool, "--il", d / "il", "--target", holdout, "-m", "el2n", "-m", "grand", "-m", "rho", "-m", "gio",
            "-K", 3, "-t", 2, "--hidden", "8", "--std", "--max-iter", 5, "--budget", 6, "-o", out)
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    digests = {}
    for c in COLUMNS:
        col = t.column(c)
        data = np.asarray(col.to_numpy(zero_copy_only=False))
        mask = np.asarray(col.is_null().to_numpy(zero_copy_only=False))
        digests[c] = hashlib.sha256(np.ascontiguousarray(np.where(mask, 0, data) if data.dtype != object else data).tobytes()
                                    + mask.tobytes()).hexdigest()
    return digests
