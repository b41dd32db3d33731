"""Online RHO-LOSS: the selector against brute force, uniformity, no gradients, and `curate train`."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from scipy.stats import chisquare
from torch import nn

from conftest import assert_fails, run, snapshot
from score_helpers import clusters, write_pool

from curate.il import ILModel
from curate.models.store import load_head
from curate.online import OnlineSelector


def _model(d=6, c=4, seed=0, dropout=0.3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 12), nn.ReLU(), nn.Dropout(dropout), nn.Linear(12, c))


def _brute_ce(model, x, y):
    # One example at a time, with log-sum-exp written out: an independent route to the same CE.
    out = []
    with torch.no_grad():
        for i in range(len(y)):
            z = model(x[i:i + 1])[0].double()
            out.append(float(torch.logsumexp(z, 0) - z[y[i]]))
    return np.array(out)


@pytest.mark.parametrize("ratio,big", [(0.1, 50), (0.25, 37), (1.0, 9), (0.5, 1)])
def test_rho_selection_is_the_argsort_of_reducible_loss(ratio, big):
    g = torch.Generator().manual_seed(3)
    n = 200
    X, y = torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)
    il = torch.rand(n, generator=g, dtype=torch.float64) * 2
    model = _model()
    model.eval()
    ids = torch.randperm(n, generator=g)[:big]
    sel = OnlineSelector.from_losses(il.numpy(), method="rho", ratio=ratio)
    got = sel.select(model, X[ids], y[ids], ids=ids)
    reducible = _brute_ce(model, X[ids], y[ids]) - il[ids].numpy()
    k = max(1, round(ratio * big))
    expected = np.argsort(-reducible, kind="stable")[:k]
    assert got.tolist() == expected.tolist()
    np.testing.assert_allclose(sel.last_scores.numpy(), reducible, atol=1e-6)  # float32 batch vs row matmul


def test_loss_selection_is_the_argsort_of_training_loss():
    g = torch.Generator().manual_seed(5)
    X, y = torch.randn(64, 6, generator=g), torch.randint(0, 4, (64,), generator=g)
    model = _model(seed=1)
    got = OnlineSelector("loss", 0.25).select(model, X, y)
    assert got.tolist() == np.argsort(-_brute_ce(model.eval(), X, y), kind="stable")[:16].tolist()


def test_ids_as_strings_from_a_mapping_match_integer_ids():
    g = torch.Generator().manual_seed(6)
    X, y = torch.randn(30, 6, generator=g), torch.randint(0, 4, (30,), generator=g)
    il = np.random.default_rng(0).random(30)
    model = _model(seed=2)
    a = OnlineSelector.from_losses(il, ratio=0.2).select(model, X, y, ids=torch.arange(30))
    b = OnlineSelector.from_losses({f"r{i}": v for i, v in enumerate(il)}, ratio=0.2).select(model, X, y, ids=[f"r{i}" for i in range(30)])
    assert a.tolist() == b.tolist()


def test_il_model_source_equals_precomputed_il_loss(tmp_path):
    X, y = clusters(120, d=8, classes=3, seed=1)
    hold = write_pool(tmp_path / "h.parquet", X, y)
    assert run("il", "train", hold, "-o", tmp_path / "il", "--epochs", 5, "--hidden", 8).exit_code == 0
    il = ILModel(tmp_path / "il")
    labels = [f"c{v}" for v in y]
    precomputed = il.losses([f"ex-{i:05d}" for i in range(120)], labels, X, "test")
    yi = torch.tensor([il.labels.index(v) for v in labels])
    model = _model(d=8, c=3)
    a = OnlineSelector.from_il_model(il, ratio=0.1).select(model, torch.from_numpy(X), yi)
    b = OnlineSelector.from_losses(precomputed, ratio=0.1).select(model, torch.from_numpy(X), yi, ids=torch.arange(120))
    assert a.tolist() == b.tolist()


def test_uniform_is_seeded_and_uniform():
    x, y = torch.zeros(20, 6), torch.zeros(20, dtype=torch.long)
    model = _model()
    a = OnlineSelector("uniform", 0.25, seed=11)
    b = OnlineSelector("uniform", 0.25, seed=11)
    draws = [a.select(model, x, y) for _ in range(2000)]
    assert all(torch.equal(d, b.select(model, x, y)) for d in draws)
    # Exactly what the documented generator gives: randperm(B)[:k] from Generator().manual_seed(seed).
    g = torch.Generator().manual_seed(11)
    assert draws[0].tolist() == torch.randperm(20, generator=g)[:5].tolist()
    for d in draws[:50]:
        assert len(set(d.tolist())) == 5
    counts = np.bincount(torch.cat(draws).numpy(), minlength=20)
    # 10,000 picks over 20 positions: each position is equally likely.
    assert chisquare(counts).pvalue > 1e-3


def test_selection_builds_no_graph_and_leaves_grads_and_modes_alone():
    model = _model()
    model.train()
    model[2].eval()  # a mixed-mode model must come back exactly as it was
    X, y = torch.randn(40, 6, requires_grad=True), torch.randint(0, 4, (40,))
    sel = OnlineSelector.from_losses(np.zeros(40), ratio=0.5)
    got = sel.select(model, X, y, ids=torch.arange(40))
    assert all(p.grad is None for p in model.parameters())
    assert X.grad is None and not got.requires_grad and sel.last_scores.grad_fn is None
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    # Dropout is off while scoring: repeated selections on a train-mode model agree.
    assert torch.equal(sel.select(model, X, y, ids=torch.arange(40)), got)


def test_selector_rejects_bad_arguments():
    from curate.errors import InputError

    for kw in ({"method": "hardest"}, {"ratio": 0}, {"ratio": 1.5}, {"ratio": float("nan")}, {"method": "rho", "il": None}):
        with pytest.raises(InputError):
            OnlineSelector(**{"method": "loss", **kw})
    with pytest.raises(InputError, match="has no il_loss"):
        OnlineSelector.from_losses({"a": 1.0}).select(_model(), torch.zeros(2, 6), torch.zeros(2, dtype=torch.long), ids=["a", "b"])


# --- curate train --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("online")
    X, y = clusters(360, d=8, classes=3, seed=2, spread=1.5)
    pool = write_pool(d / "pool.parquet", X[:240], y[:240])
    hold = write_pool(d / "hold.parquet", X[240:300], y[240:300], ids=[f"h{i}" for i in range(60)])
    test = write_pool(d / "test.parquet", X[300:], y[300:], ids=[f"t{i}" for i in range(60)])
    assert run("il", "train", hold, "-o", d / "il", "--epochs", 10, "--hidden", 8).exit_code == 0
    return d, pool, hold, test, d / "il"


def _train(d, pool, il, test, out, *extra):
    return run("train", pool, "--il", il, "--eval", test, "--big-batch", 40, "--ratio", 0.25, "--steps", 12,
               "--eval-every", 5, "--hidden", 8, "-o", out, *extra)


def test_train_writes_run_directory_with_log_and_curve(files):
    d, pool, hold, test, il = files
    out = d / "run"
    r = _train(d, pool, il, test, out, "--json")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "curve.parquet", "model.safetensors", "selected.parquet"]
    log = pq.read_table(out / "selected.parquet").to_pydict()
    assert len(log["id"]) == 12 * 10 and sorted(set(log["step"])) == list(range(1, 13))
    assert log["rank"][:10] == list(range(10))
    # Each step's scores are in descending order and the logged il_loss is the IL model's.
    s = np.array(log["score"]).reshape(12, 10)
    assert (np.diff(s, axis=1) <= 0).all()
    pool_t = pq.read_table(pool)
    ids = pool_t.column("id").to_pylist()
    from curate.io.parquet import embedding_array

    il_all = ILModel(il).losses(ids, pool_t.column("label").to_pylist(), embedding_array(pool_t.column("embedding")), "t")
    np.testing.assert_allclose(log["il_loss"], il_all[[ids.index(i) for i in log["id"]]], atol=1e-9)
    curve = pq.read_table(out / "curve.parquet").to_pydict()
    assert curve["step"] == [0, 5, 10, 12] and curve["train_loss"][0] is None
    # The final accuracy in the curve is the saved model's accuracy on the eval file.
    head, cfg = load_head(out)
    tt = pq.read_table(test)
    Xt = torch.from_numpy(embedding_array(tt.column("embedding")))
    yt = torch.tensor([cfg["labels"].index(v) for v in tt.column("label").to_pylist()])
    with torch.no_grad():
        acc = float((head(Xt).argmax(1) == yt).double().mean())
    assert curve["eval_accuracy"][-1] == pytest.approx(acc)
    assert json.loads(r.stdout)["final_eval_accuracy"] == pytest.approx(acc)


def test_train_is_deterministic_per_seed(files, tmp_path):
    d, pool, hold, test, il = files
    for method in ("rho", "uniform"):
        a, b, c = tmp_path / f"{method}-a", tmp_path / f"{method}-b", tmp_path / f"{method}-c"
        assert _train(d, pool, il, test, a, "--select", method).exit_code == 0
        assert _train(d, pool, il, test, b, "--select", method).exit_code == 0
        assert _train(d, pool, il, test, c, "--select", method, "--seed", 1).exit_code == 0
        sa, sb = snapshot(a), snapshot(b)
        # config.json holds the output path through the command line; every other file is byte-identical.
        assert {k: v for k, v in sa.items() if k != "config.json"} == {k: v for k, v in sb.items() if k != "config.json"}
        assert pq.read_table(a / "selected.parquet").column("id") != pq.read_table(c / "selected.parquet").column("id")


def test_selection_methods_differ_as_the_paper_says(files, tmp_path):
    d, pool, hold, test, il = files
    ids = {}
    for m in ("rho", "loss", "uniform"):
        assert _train(d, pool, il, test, tmp_path / m, "--select", m).exit_code == 0
        ids[m] = pq.read_table(tmp_path / m / "selected.parquet").column("id").to_pylist()
    assert ids["rho"] != ids["loss"] and ids["loss"] != ids["uniform"]


@pytest.mark.parametrize("args,fragments", [
    (["--ratio", "0"], ["--ratio 0.0", "(0, 1]"]),
    (["--ratio", "1.5"], ["--ratio 1.5"]),
    (["--ratio", "nan"], ["--ratio nan"]),
    (["--big-batch", "0"], ["--big-batch 0"]),
    (["--big-batch", "1000"], ["--big-batch 1000", "larger than the pool (240 rows)"]),
    (["--steps", "0"], ["--steps 0"]),
    (["--steps", "-3"], ["--steps -3"]),
    (["--eval-every", "0"], ["--eval-every 0"]),
    (["--select", "hardest"], ["--select hardest", "rho, loss, uniform"]),
    (["--lr", "-0.1"], ["--lr -0.1"]),
    (["--lr", "inf"], ["--lr inf"]),
    (["--hidden", "0"], ["--hidden 0"]),
    (["--dropout", "1.5"], ["--dropout 1.5"]),
    (["--seed", "-1"], ["--seed -1"]),
    (["--threads", "0"], ["--threads 0"]),
    (["--device", "tpu"], ["--device tpu"]),
    (["--arch", "cnn"], ["--arch cnn"]),
])
def test_train_bad_options(files, tmp_path, args, fragments):
    d, pool, hold, test, il = files
    assert_fails(["train", pool, "--il", il, "--big-batch", 40, "-o", tmp_path / "out", *args], *fragments,
                 out=tmp_path / "out", root=d)


def test_train_bad_inputs(files, tmp_path):
    d, pool, hold, test, il = files
    out = tmp_path / "out"
    assert_fails(["train", pool, "--big-batch", 40, "-o", out], "--select rho needs --il", out=out)
    assert_fails(["train", pool, "--il", pool, "--big-batch", 40, "-o", out], "this is a Parquet file", out=out)
    assert_fails(["train", tmp_path / "none.parquet", "--il", il, "-o", out], "no such file", out=out)
    wide = write_pool(tmp_path / "wide.parquet", np.zeros((50, 4), np.float32), [0, 1] * 25)
    assert_fails(["train", pool, "--il", il, "--big-batch", 40, "--eval", wide, "-o", out], "4 dimensions", out=out)
    unseen = write_pool(tmp_path / "unseen.parquet", clusters(50, d=8, classes=5)[0], list(range(5)) * 10)
    assert_fails(["train", pool, "--il", il, "--big-batch", 40, "--eval", unseen, "-o", out], "'c3'", out=out)
    r = _train(d, pool, il, test, out)
    assert r.exit_code == 0
    assert_fails(["train", pool, "--il", il, "--big-batch", 40, "-o", out], "already exists", root=out)
