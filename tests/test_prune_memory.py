"""Peak memory of `curate prune` grows by a few bytes a row: measured in a subprocess at two sizes.

By design prune holds, per row, a keep mask and a reason code (1 byte each), the label as a code
(1 byte for up to 256 classes; 4 while it is read), and while a quantile is taken the valid values
of one column (8 bytes): about 11 bytes at the peak of a large file. Here the --dropped writer's
batch (65536 ids as Python strings, a fixed cost) is about as large as that at 400k rows, so the
growth measured is lower (4.6 to 4.9 bytes a row). The ids (about 25 bytes in Arrow here), the
score columns (8 bytes each) and the embeddings (64 bytes at d = 16) stay on disk; the earlier
whole-table code held about 210 bytes a row here; holding the ids alone would break the bound. Both sizes are above the largest batch prune decodes (65536 rows). glibc's mmap
threshold is fixed (its sliding default keeps freed blocks of a few MB in the heap, counted at
small sizes only) and Arrow allocates through the same malloc.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curate.io.parquet import embedding_column, write_table
from memory_helpers import measure

def _scored(path: Path, n: int, seed: int, d: int = 16) -> Path:
    rng = np.random.default_rng(seed)
    table = pa.table({"id": pa.array([f"row-{i:09d}" for i in range(n)]),
                      "label": pa.array([f"c{v}" for v in rng.integers(0, 10, n)]),
                      "embedding": embedding_column(rng.standard_normal((n, d), dtype=np.float32)),
                      "el2n": rng.random(n), "grand": rng.random(n) * 3, "rho": rng.normal(size=n)})
    write_table(table, path, {"step": "score"})
    return path


def _peak(scored: Path, out: Path) -> dict[str, int]:
    args = ["prune", str(scored), "--keep", "el2n in [q0.10, q0.90]", "--keep", "rho > 0", "--per-class",
            "--dropped", str(out) + ".dropped.csv", "-o", str(out)]
    return measure(args, Path(str(out) + ".mem.json"))


@pytest.mark.slow
def test_peak_memory_of_prune_grows_by_few_bytes_a_row(tmp_path):
    n1, n2 = 100_000, 400_000
    small = _peak(_scored(tmp_path / "small.parquet", n1, seed=1), tmp_path / "small.out.parquet")
    big = _peak(_scored(tmp_path / "big.parquet", n2, seed=2), tmp_path / "big.out.parquet")
    per_row = (big["VmHWM"] - small["VmHWM"]) / (n2 - n1)
    # Measured 4.66, 4.86 and 4.63 (three runs); 20 is the target (the earlier code: 210).
    assert per_row <= 20, (small, big, per_row)
