"""IL training and online selection on a CUDA GPU equal CPU within float tolerance.

Marked ``cuda`` and skipped without a GPU. Library calls only (no CLI import), so it runs with
``--noconftest`` on a GPU machine without the reporting dependencies.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from curate.il import ILConfig, train_il
from curate.io.parquet import read_table
from curate.models.heads import HeadSpec
from curate.models.train import TrainConfig
from curate.online_train import OnlineConfig, train_online
from curate.runtime import Runtime
from score_helpers import clusters, write_pool

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_il_train_and_online_training_on_cuda_equal_cpu(tmp_path):
    X, y = clusters(400, d=16, classes=4, seed=1, spread=1.5)
    Xh, yh = clusters(160, d=16, classes=4, seed=2, spread=1.5)
    pool = write_pool(tmp_path / "pool.parquet", X, y)
    holdout = write_pool(tmp_path / "holdout.parquet", Xh, yh, ids=[f"h{i}" for i in range(160)])
    il_cfg = ILConfig(spec=HeadSpec(hidden=(16,)), train=TrainConfig(epochs=8))
    on_cfg = OnlineConfig(method="rho", ratio=0.25, big_batch=64, steps=20, eval_every=10, spec=HeadSpec(hidden=(16,)))
    curves, chosen_epochs = {}, {}
    for device in ("cpu", "cuda"):
        rt = Runtime.build(device)
        cfg = train_il(holdout, tmp_path / f"il-{device}", il_cfg, runtime=rt)
        chosen_epochs[device] = cfg["chosen_epoch"]
        train_online(pool, tmp_path / f"run-{device}", on_cfg, il=tmp_path / f"il-{device}", eval_path=holdout, runtime=rt)
        curves[device] = read_table(tmp_path / f"run-{device}" / "curve.parquet")
    assert chosen_epochs["cpu"] == chosen_epochs["cuda"]
    for c in ("train_loss", "eval_loss", "eval_accuracy"):
        a, b = curves["cpu"].column(c).to_numpy(), curves["cuda"].column(c).to_numpy()
        np.testing.assert_allclose(b[~np.isnan(b)], a[~np.isnan(a)], rtol=1e-3, atol=1e-4, err_msg=c)
    sel = {d: pq.read_table(tmp_path / f"run-{d}" / "selected.parquet").column("id").to_pylist() for d in ("cpu", "cuda")}
    assert sel["cpu"] == sel["cuda"]
