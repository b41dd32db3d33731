"""Peak memory of `curate score -m rho --il CROSS_FIT_DIR` grows by a few bytes a row, not by a dict of ids.

Measured as tests/test_stream_memory.py measures `curate score` (its child, its settings, for the
same reasons; glibc's mmap threshold fixed at 64 KiB here): a subprocess at two pool sizes, both
above the largest block a pass holds, each with a cross-fit model trained on that pool; the growth
of the peak resident set per added row is what a row costs. The score path costs about 14 bytes
a row at its peak by design; the cross-fit lookup adds the halves (1 byte a row) and one block.
Measured: 3.4, 5.4 and 5.1 bytes a row in all (3 runs). The assignment loaded as a Python dict,
as earlier versions did, cost 98 to 104 bytes a row here (a str object and a dict slot per id).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.il import ILConfig, train_cross_fit
from curate.models.heads import HeadSpec
from curate.models.train import TrainConfig
from curate.runtime import Runtime
from memory_helpers import measure
from test_stream_memory import _pool


def _peak(pool: Path, il: Path, out: Path) -> int:
    args = ["score", str(pool), "-m", "rho", "--il", str(il), "-K", "1", "-t", "1", "--arch", "linear",
            "--batch-size", "4096", "--threads", "1", "--device", "cpu", "-o", str(out)]
    return measure(args, Path(str(out) + ".mem.json"), env={"CURATE_MAP_BUDGET": str(2 * 2**20)})["VmHWM"]


@pytest.mark.slow
def test_peak_memory_of_cross_fit_scoring_grows_by_few_bytes_a_row(tmp_path):
    d, sizes = 16, (70_000, 250_000)
    cfg = ILConfig(spec=HeadSpec(arch="linear"), train=TrainConfig(epochs=1, batch_size=4096), val_fraction=0.05)
    peaks = []
    for n in sizes:
        pool = _pool(tmp_path / f"p{n}.parquet", n, d, seed=n)
        train_cross_fit(pool, tmp_path / f"cf{n}", cfg, runtime=Runtime.build(device="cpu", threads=1))
        peaks.append(_peak(pool, tmp_path / f"cf{n}", tmp_path / f"s{n}.parquet"))
    per_row = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    assert per_row <= 30, (peaks, per_row)
