"""The per-row pass in one forward: the same bytes as separate passes, nothing of the caller's changed.

The reference is the formulation before the change, written out here: heads drawn then loaded
(``load_state_dict``), a ``no_grad`` forward for EL2N and CE, and GraNd from a second forward with
every square taken out of place.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from curate.models.heads import Ensemble, HeadSpec
from curate.models.train import TrainConfig, train_ensemble
from curate.scores.el2n import el2n
from curate.scores.grand import grand_and_logits
from curate.scores.rho import per_example_ce
from curate.scores.snapshot import RowTask, score_rows
from score_helpers import clusters

SPECS = [HeadSpec(arch="mlp", in_dim=48, n_classes=5, hidden=(64, 16)), HeadSpec(arch="linear", in_dim=48, n_classes=5)]
SEEDS = [3, 4, 5]


def reference_grand(ens: Ensemble, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """GraNd as it was computed before the one-pass change: out-of-place squares, (K, N) float64."""
    with torch.enable_grad():
        logits, pairs = ens(X, keep_preactivations=True)
        k, b, c = logits.shape
        grads = torch.autograd.grad(F.cross_entropy(logits.reshape(k * b, c), y.repeat(k), reduction="sum"), [z for _, z in pairs])
    sq = torch.zeros(k, b, dtype=torch.float64)
    for layer, ((a, _), g) in enumerate(zip(pairs, grads)):
        a_sq = (X.pow(2).sum(-1) if layer == 0 else a.detach().pow(2).sum(-1)).double()
        sq += g.pow(2).sum(-1).double() * (a_sq + 1.0)
    return sq.sqrt()


def trained(spec: HeadSpec, X: np.ndarray, y: np.ndarray) -> dict[str, torch.Tensor]:
    ens = Ensemble(spec, SEEDS)
    with torch.random.fork_rng(devices=[]):
        train_ensemble(ens, torch.from_numpy(X), torch.from_numpy(y), TrainConfig(epochs=1, batch_size=64))
    return {k: v.detach().clone() for k, v in ens.state_dict().items()}


@pytest.mark.parametrize("spec", SPECS + [HeadSpec(arch="mlp", in_dim=384, n_classes=10, hidden=(256,))],
                         ids=["mlp", "linear", "default-size"])
def test_one_pass_gives_the_bytes_of_separate_passes(spec):
    X, y = clusters(1500, d=spec.in_dim, classes=spec.n_classes, seed=11, spread=2.0)
    y = y.astype(np.int64)
    state = trained(spec, X, y)
    before = {k: v.clone() for k, v in state.items()}
    X_before = X.copy()
    got = score_rows(RowTask(spec.to_dict(), tuple(SEEDS), state, state, X, y))

    ref = Ensemble(spec, SEEDS)
    ref.load_state_dict(state)
    ref.eval()
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    with torch.no_grad():
        logits = ref(xt)
    assert got["el2n"].tobytes() == el2n(logits, yt).numpy().tobytes()
    assert got["ce"].tobytes() == per_example_ce(logits, yt).numpy().tobytes()
    assert got["grand"].tobytes() == reference_grand(ref, xt, yt).numpy().tobytes()
    assert got["grand"].shape == (len(SEEDS), 1500) and np.isfinite(got["grand"]).all() and (got["grand"] > 0).all()
    # The squares are taken in place on the pass's own tensors only: the task's heads and rows are untouched.
    assert all(torch.equal(before[k], state[k]) for k in state)
    assert np.array_equal(X, X_before)


def test_grand_at_init_and_without_grand_keep_their_bytes():
    spec = SPECS[0]
    X, y = clusters(400, d=48, classes=5, seed=12, spread=2.0)
    y = y.astype(np.int64)
    state = trained(spec, X, y)
    init = {k: v.detach().clone() for k, v in Ensemble(spec, SEEDS).state_dict().items()}
    with_init = score_rows(RowTask(spec.to_dict(), tuple(SEEDS), state, init, X, y))
    at_checkpoint = score_rows(RowTask(spec.to_dict(), tuple(SEEDS), state, state, X, y))
    no_grand = score_rows(RowTask(spec.to_dict(), tuple(SEEDS), state, None, X, y))
    assert "grand" not in no_grand
    for k in ("el2n", "ce"):
        assert with_init[k].tobytes() == at_checkpoint[k].tobytes() == no_grand[k].tobytes(), k
    ref = Ensemble(spec, SEEDS)
    ref.load_state_dict(init)
    assert with_init["grand"].tobytes() == reference_grand(ref.eval(), torch.from_numpy(X), torch.from_numpy(y)).numpy().tobytes()


def test_ensemble_grand_leaves_a_per_member_batch_unchanged():
    # (K, B, in): each member its own rows; layer 0's input is the caller's tensor, never squared in place.
    spec = SPECS[0]
    ens = Ensemble(spec, SEEDS).eval()
    X = torch.randn(3, 50, 48, generator=torch.Generator().manual_seed(0))
    y = torch.arange(50) % 5
    X0 = X.clone()
    g, logits = grand_and_logits(ens, X, y)
    assert torch.equal(X, X0)
    with torch.no_grad():
        assert torch.equal(logits, ens(X))
    assert g.numpy().tobytes() == reference_grand(ens, X, y).numpy().tobytes()
    assert g.shape == (3, 50) and not logits.requires_grad


def test_from_state_shares_the_tensors_and_draws_nothing():
    spec = SPECS[0]
    drawn = Ensemble(spec, SEEDS)
    state = drawn.state_dict()
    rng = torch.random.get_rng_state()
    ens = Ensemble.from_state(spec, SEEDS, state)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(ens.state_dict()[k].data_ptr() == v.data_ptr() for k, v in state.items())
    x = torch.randn(7, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ens(x), drawn(x))
    assert ens.k == 3 and ens.spec == spec


def test_from_state_refuses_a_state_of_another_shape():
    state = Ensemble(SPECS[0], SEEDS).state_dict()
    with pytest.raises(ValueError, match="layer 0"):
        Ensemble.from_state(HeadSpec(arch="mlp", in_dim=47, n_classes=5, hidden=(64, 16)), SEEDS, state)
    with pytest.raises(ValueError, match="keys"):
        Ensemble.from_state(SPECS[1], SEEDS, state)


def test_training_batches_are_the_rows_of_each_members_permutation():
    from curate.models.train import _batches, _permutations

    X = torch.randn(53, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(53) % 4
    ens = Ensemble(HeadSpec(arch="linear", in_dim=6, n_classes=4), SEEDS)
    perms = _permutations(53, SEEDS, epoch=1)
    got = list(_batches(ens, X, y, TrainConfig(batch_size=8), epoch=1))
    assert len(got) == 7 and got[-1][0].shape == (3, 5, 6)
    for i, (xb, yb) in enumerate(got):
        idx = perms[:, 8 * i:8 * i + 8]
        assert torch.equal(xb, torch.stack([X[p] for p in idx])) and torch.equal(yb, torch.stack([y[p] for p in idx]))
