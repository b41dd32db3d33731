"""The score step on a CUDA GPU equals CPU within float tolerance (GPU kernels change low bits).

Marked ``cuda`` and skipped without a GPU. It calls the library, not the CLI, and imports no
shared test helper that loads the CLI, so it also runs with ``--noconftest`` on a GPU machine
that has torch, numpy, pyarrow and safetensors but not the reporting dependencies.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from curate.il import ILConfig, train_il
from curate.io.parquet import read_provenance
from curate.models.heads import HeadSpec
from curate.models.train import TrainConfig
from curate.runtime import Runtime
from curate.score import ScoreConfig, score
from score_helpers import clusters, write_pool

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_el2n_grand_rho_label_quality_on_cuda_equal_cpu(tmp_path):
    X, y = clusters(300, d=16, classes=4, seed=5, spread=1.5)
    Xh, yh = clusters(120, d=16, classes=4, seed=6, spread=1.5)
    pool = write_pool(tmp_path / "pool.parquet", X, y)
    holdout = write_pool(tmp_path / "holdout.parquet", Xh, yh, ids=[f"h{i}" for i in range(120)])
    train_il(holdout, tmp_path / "il", ILConfig(spec=HeadSpec(hidden=(16,)), train=TrainConfig(epochs=5)))
    cfg = ScoreConfig(methods=("el2n", "grand", "rho", "label_quality"), seeds=3, spec=HeadSpec(hidden=(16,)),
                      train=TrainConfig(epochs=3), il=str(tmp_path / "il"), std=True, lq_folds=3)
    got = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.parquet"
        score(pool, out, cfg, runtime=Runtime.build(device, chunk=64))
        got[device] = pq.read_table(out)
        rec = read_provenance(out)["scores"]["el2n"]["runtime"]
        assert rec["device"] == device and (device == "cpu" or "gpu" in rec)
    for c in ("el2n", "el2n_std", "grand", "grand_std", "rho", "target_loss", "il_loss", "label_quality"):
        np.testing.assert_allclose(got["cuda"].column(c).to_numpy(), got["cpu"].column(c).to_numpy(),
                                   rtol=1e-3, atol=1e-4, err_msg=c)
