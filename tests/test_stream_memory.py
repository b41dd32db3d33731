"""Peak memory of `curate score` does not grow with the rows: measured in a subprocess at two sizes.

Both sizes are above the largest block a pass holds (65536 rows: a Parquet row group, an IL
block), so their fixed costs are the same, and the peak's growth per added row is what a row
costs. By design a row may cost, at the peak, its labels as int16 class codes (2 bytes), and
while the heads train its int64 label (8) and its share of the shuffled order being drawn
(16): about 26 bytes. Everything else is on disk: the embeddings (64 bytes a row at d = 16),
the score columns (8 bytes each, 5 here), the ids (about 25 bytes in Arrow). Holding any of
them, as earlier versions did (about 130 bytes a row here), breaks the 40-byte bound.

Settings that make small inputs behave as large ones do: the embedding map's budget (2 MiB) is
below both pools' matrix files, so both hold the same mapped pages; glibc's mmap threshold is
fixed at 64 KiB: by default it rises to the largest block freed (up to 32 MiB), so an n-length
array of a few MB, freed, would stay in the heap and be counted (at 1 MiB, three repeats still
measured 19 to 31 bytes a row; at 64 KiB 4 to 5), where at 10M rows every
n-length array is far above 32 MiB and is returned to the system when freed; and Arrow
allocates through that same malloc (its own pool keeps a varying few MB cached, noise here). The order in which
the heads see the rows is read back in blocks of 2**20 indices: larger than both pools here, so
the child uses 2**14 (the cap a large n reaches; the order itself is the same).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyarrow as pa

from curate.io.parquet import embedding_column, write_table
from conftest import run
from memory_helpers import measure



def _pool(path: Path, n: int, d: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    centres = rng.normal(0, 1.0, (4, d)).astype(np.float32)
    X = centres[y] + rng.standard_normal((n, d), dtype=np.float32)
    table = pa.table({"id": pa.array([f"r{i}" for i in range(n)]), "label": pa.array([f"c{v}" for v in y]),
                      "embedding": embedding_column(X)})
    write_table(table, path, {"step": "embed", "embedding_model": {"name": "synthetic", "sha256": "a" * 64, "dimension": d}})
    return path


def _peak(pool: Path, il: Path, out: Path) -> dict[str, int]:
    args = ["score", str(pool), "-m", "el2n", "-m", "grand", "-m", "rho", "--il", str(il), "-K", "1", "-t", "1",
            "--arch", "linear", "--batch-size", "4096", "--threads", "1", "--device", "cpu", "-o", str(out)]
    return measure(args, Path(str(out) + ".mem.json"), env={"CURATE_MAP_BUDGET": str(2 * 2**20)},
                   set_attrs=[("curate.models.train", "ORDER_BLOCK", 2**14)])


@pytest.mark.slow
def test_peak_memory_of_score_grows_by_few_bytes_a_row(tmp_path):
    d, n1, n2 = 16, 60_000, 240_000
    hold = _pool(tmp_path / "hold.parquet", 2000, d, seed=1)
    assert run("il", "train", hold, "-o", tmp_path / "il", "--epochs", "2", "--arch", "linear").exit_code == 0
    small = _peak(_pool(tmp_path / "small.parquet", n1, d, seed=2), tmp_path / "il", tmp_path / "small.out.parquet")
    big = _peak(_pool(tmp_path / "big.parquet", n2, d, seed=3), tmp_path / "il", tmp_path / "big.out.parquet")
    per_row = (big["VmHWM"] - small["VmHWM"]) / (n2 - n1)
    assert per_row <= 40, (small, big, per_row)
