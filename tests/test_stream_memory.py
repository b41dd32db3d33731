"""Peak memory of `curate score` does not grow with the rows: measured in a subprocess at two sizes.

Both sizes are above the largest block a pass holds (65536 rows: a Parquet row group, an IL
block), so their fixed costs are the same. The embeddings of the larger pool weigh 264k x 128 x 4
bytes = 135 MB; holding them (as the in-memory path did) would add at least that to the peak.
What may grow with n is a few n-length columns (labels, ids, scores: about 100 bytes a row).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyarrow as pa

from curate.io.parquet import embedding_column, write_table
from conftest import run

# Runs the CLI in this process, then records its peak resident set (VmHWM) and what is resident at the end.
CHILD = """
import json, sys
from curate.cli import main
sys.argv = ["curate", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
with open(sys.argv[-1] + ".mem.json", "w") as f:
    json.dump({k: int(status[k].split()[0]) * 1024 for k in ("VmHWM", "RssAnon", "RssFile")}, f)
"""


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
    args = ["score", str(pool), "-m", "el2n", "-m", "grand", "-m", "rho", "--il", str(il), "-K", "2", "-t", "1",
            "--arch", "linear", "--batch-size", "64", "--threads", "1", "--device", "cpu", "-o", str(out)]
    # A 32 MiB map budget: below both pools' matrix files (34 MB, 135 MB), so both run bounded.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "CURATE_MAP_BUDGET": str(32 * 2**20)}
    subprocess.run([sys.executable, "-c", CHILD, *args], check=True, env=env, capture_output=True)
    return json.loads(Path(str(out) + ".mem.json").read_text())


@pytest.mark.slow
def test_peak_memory_of_score_does_not_grow_with_rows(tmp_path):
    d = 128
    hold = _pool(tmp_path / "hold.parquet", 2000, d, seed=1)
    assert run("il", "train", hold, "-o", tmp_path / "il", "--epochs", "2", "--arch", "linear").exit_code == 0
    small = _peak(_pool(tmp_path / "small.parquet", 66_000, d, seed=2), tmp_path / "il", tmp_path / "small.out.parquet")
    big = _peak(_pool(tmp_path / "big.parquet", 264_000, d, seed=3), tmp_path / "il", tmp_path / "big.out.parquet")
    embeddings = 264_000 * d * 4
    growth = big["VmHWM"] - small["VmHWM"]
    assert big["VmHWM"] / small["VmHWM"] < 1.5, (small, big)
    # The 198k extra rows may cost their columns (about 100 bytes a row), never their embeddings (512 bytes a row).
    assert growth < 0.3 * embeddings, (small, big, growth)
