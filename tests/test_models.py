"""Heads and training: K stacked heads train exactly like K separate ones; IL checkpoint choice."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import TrainConfig, _permutations, stratified_split, train_ensemble, train_with_validation
from score_helpers import clusters


def test_batched_heads_equal_separately_trained_heads():
    X, y = clusters(90, d=10, classes=3, seed=1)
    X, y = torch.from_numpy(X).double(), torch.from_numpy(y)
    spec = HeadSpec(arch="mlp", in_dim=10, n_classes=3, hidden=(8,))
    seeds = [11, 12, 13]
    cfg = TrainConfig(epochs=3, batch_size=32)
    ens = Ensemble(spec, seeds, dtype=torch.float64)
    separate = [ens.member(k) for k in range(3)]  # same initial weights
    train_ensemble(ens, X, y, cfg)
    for k, head in enumerate(separate):
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        head.train()
        for epoch in range(cfg.epochs):
            perm = _permutations(len(X), [seeds[k]], epoch)[0]
            for s in range(0, len(X), cfg.batch_size):
                idx = perm[s:s + cfg.batch_size]
                loss = F.cross_entropy(head(X[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        trained = ens.member(k)
        for a, b in zip(trained.parameters(), head.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_members_differ_by_seed_and_repeat_by_seed():
    spec = HeadSpec(arch="linear", in_dim=4, n_classes=2)
    a, b = Ensemble(spec, [1, 2]), Ensemble(spec, [1, 2])
    assert torch.equal(a.weights[0], b.weights[0])
    assert not torch.equal(a.weights[0][0], a.weights[0][1])


def test_checkpoint_is_the_epoch_of_minimum_validation_loss():
    # Few, noisy rows and a wide MLP: validation loss falls, then rises as it overfits.
    X, y = clusters(60, d=20, classes=3, seed=2, spread=3.0)
    tr, va = stratified_split(y, 0.5, 0)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    spec = HeadSpec(arch="mlp", in_dim=20, n_classes=3, hidden=(128,))
    ens = Ensemble(spec, [0])
    ens, curve, best = train_with_validation(ens, X[tr], y[tr], X[va], y[va],
                                             TrainConfig(epochs=200, batch_size=8, lr=1e-2), patience=200)
    losses = [row["val_loss"] for row in curve]
    assert best == int(np.argmin(losses))
    assert 0 < best < len(curve) - 1  # it did overfit after the best epoch
    final_loss = F.cross_entropy(ens(X[va])[0], y[va]).item()
    assert abs(final_loss - losses[best]) < 1e-6  # the returned weights are that epoch's


def test_stratified_split_keeps_every_class_on_both_sides():
    y = np.array([0] * 10 + [1] * 3 + [2] * 2)
    tr, va = stratified_split(y, 0.2, 0)
    assert set(y[va]) == {0, 1, 2} and set(y[tr]) == {0, 1, 2}
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
