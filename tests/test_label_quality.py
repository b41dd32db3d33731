"""label_quality against a slow explicit loop: per fold, train heads on the other folds, predict the held-out rows."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import torch

from conftest import assert_fails, run
from curate.io.parquet import read_provenance
from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import TrainConfig, train_ensemble
from score_helpers import clusters, write_pool


def oracle(X, y, n_classes, folds, seed, K, epochs, hidden):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    fold = np.empty(len(y), dtype=int)
    for pos, row in enumerate(perm):
        fold[row] = pos % folds
    out = np.full(len(y), np.nan)
    spec = HeadSpec(arch="mlp", in_dim=X.shape[1], n_classes=n_classes, hidden=(hidden,))
    for f in range(folds):
        train_rows = [i for i in range(len(y)) if fold[i] != f]
        ens = Ensemble(spec, [seed * 1000 + k for k in range(K)])
        train_ensemble(ens, torch.from_numpy(X[train_rows]), torch.from_numpy(y[train_rows]), TrainConfig(epochs=epochs))
        for i in range(len(y)):
            if fold[i] != f:
                continue
            probs = []
            for k in range(K):
                head = ens.member(k).eval()
                with torch.no_grad():
                    p = torch.softmax(head(torch.from_numpy(X[i:i + 1])).double(), dim=-1)[0]
                probs.append(float(p[y[i]]))
            out[i] = sum(probs) / K
    return out


def test_label_quality_equals_the_out_of_fold_loop(tmp_path):
    X, y = clusters(45, d=6, classes=3, seed=4, spread=1.5)
    y_noisy = y.copy()
    y_noisy[[0, 1, 2]] = (y[[0, 1, 2]] + 1) % 3  # three flipped labels
    pool = write_pool(tmp_path / "pool.parquet", X, y_noisy)
    out = tmp_path / "lq.parquet"
    r = run("score", pool, "-m", "label_quality", "--lq-folds", 3, "-K", 2, "-t", 4, "--hidden", 8, "--seed", 3,
            "--device", "cpu", "-o", out)
    assert r.exit_code == 0, r.stderr
    got = pq.read_table(out).column("label_quality").to_numpy()
    # labels are written as "c0".."c2", whose sorted class order equals the integer order
    want = oracle(X, y_noisy.astype(np.int64), 3, 3, 3, 2, 4, 8)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert ((got >= 0) & (got <= 1)).all()
    rec = read_provenance(out)["scores"]["label_quality"]
    assert rec["folds"] == 3 and rec["method"] == "label_quality" and rec["runtime"]["device"] == "cpu"


def test_label_quality_refuses_more_folds_than_rows(tmp_path):
    X, y = clusters(6, d=4, classes=2, seed=0)
    pool = write_pool(tmp_path / "pool.parquet", X, y)
    assert_fails(["score", pool, "-m", "label_quality", "--lq-folds", 7, "-o", tmp_path / "o.parquet"],
                 "6 rows", "--lq-folds 7", root=tmp_path)
