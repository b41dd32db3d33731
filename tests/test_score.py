"""`curate il` and `curate score`: columns against direct computations, provenance, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from curate.cli import app
from curate.io.parquet import embedding_array, read_provenance
from curate.models.heads import Ensemble, HeadSpec
from curate.models.store import load_head
from curate.models.train import TrainConfig, train_ensemble
from score_helpers import clusters, write_pool

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    X, y = clusters(120, d=16, classes=3, seed=0, spread=1.5)
    Xh, yh = clusters(90, d=16, classes=3, seed=0, spread=1.5)
    pool = write_pool(d / "pool.parquet", X, y)
    holdout = write_pool(d / "holdout.parquet", Xh[::-1].copy(), yh[::-1].tolist(), ids=[f"h{i}" for i in range(90)])
    il = d / "il"
    r = run("il", "train", holdout, "-o", il, "--epochs", "30", "--hidden", "16")
    assert r.exit_code == 0, r.stderr
    return d, pool, holdout, il


def test_il_directory_holds_weights_config_and_best_epoch(files):
    d, pool, holdout, il = files
    assert sorted(p.name for p in il.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((il / "config.json").read_text())
    assert cfg["labels"] == ["c0", "c1", "c2"]
    assert cfg["optimizer"]["optimizer"] == "AdamW" and cfg["optimizer"]["lr"] == 1e-3
    losses = [row["val_loss"] for row in cfg["curve"]]
    assert cfg["chosen_epoch"] == int(np.argmin(losses)) and cfg["val_loss"] == min(losses)
    assert cfg["embedding_model"]["name"] == "synthetic"
    r = run("il", "info", il, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["labels"] == ["c0", "c1", "c2"]


def test_el2n_grand_rho_columns_equal_direct_computation(files, tmp_path):
    d, pool, holdout, il = files
    out = tmp_path / "scored.parquet"
    r = run("score", pool, "--il", il, "-m", "el2n", "-m", "grand", "-m", "rho", "-K", 3, "-t", 2,
            "--hidden", "8", "--std", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == 120
    t = pq.read_table(out)
    for c in ("id", "label", "embedding", "el2n", "el2n_std", "grand", "grand_std", "target_loss", "il_loss", "rho"):
        assert c in t.column_names
    # Re-train the same three heads independently and apply the formulas directly.
    X = torch.from_numpy(embedding_array(t.column("embedding")))
    y = torch.tensor([int(v[1]) for v in t.column("label").to_pylist()])
    spec = HeadSpec(arch="mlp", in_dim=16, n_classes=3, hidden=(8,))
    ens = Ensemble(spec, [0, 1, 2])
    torch.manual_seed(0)
    train_ensemble(ens, X, y, TrainConfig(epochs=2))
    el2n, ce = [], []
    for k in range(3):
        with torch.no_grad():
            logits = ens.member(k).eval()(X).double()
        p = logits.softmax(-1).numpy()
        onehot = np.eye(3)[y.numpy()]
        el2n.append(np.sqrt(((p - onehot) ** 2).sum(1)))
        ce.append(F.cross_entropy(logits, y, reduction="none").numpy())
    np.testing.assert_allclose(t.column("el2n").to_numpy(), np.mean(el2n, 0), atol=1e-6)
    np.testing.assert_allclose(t.column("el2n_std").to_numpy(), np.std(el2n, 0), atol=1e-6)
    np.testing.assert_allclose(t.column("target_loss").to_numpy(), np.mean(ce, 0), atol=1e-5)
    head, _ = load_head(il)
    with torch.no_grad():
        il_direct = F.cross_entropy(head(X).double(), y, reduction="none").numpy()
    np.testing.assert_allclose(t.column("il_loss").to_numpy(), il_direct, atol=1e-6)
    np.testing.assert_array_equal(t.column("rho").to_numpy(), t.column("target_loss").to_numpy() - t.column("il_loss").to_numpy())
    assert (t.column("el2n").to_numpy() <= np.sqrt(2) + 1e-9).all()
    prov = read_provenance(out)["scores"]
    assert prov["el2n"]["K"] == 3 and prov["el2n"]["t"] == 2 and prov["el2n"]["seeds"] == [0, 1, 2]
    assert prov["rho"]["il_model_sha256"] == prov["il_loss"]["il_model_sha256"] and len(prov["rho"]["il_model_sha256"]) == 64
    assert prov["grand"]["grand_at"] == "checkpoint"


def test_same_inputs_and_seed_give_the_same_bytes(files, tmp_path):
    d, pool, holdout, il = files
    outs = []
    for name in ("a", "b"):
        out = tmp_path / "x.parquet"
        r = run("score", pool, "--il", il, "-m", "el2n", "-m", "rho", "-K", 2, "-t", 1, "-o", out, "--overwrite")
        assert r.exit_code == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_rerun_with_another_method_keeps_existing_columns(files, tmp_path):
    d, pool, holdout, il = files
    first, second = tmp_path / "1.parquet", tmp_path / "2.parquet"
    assert run("score", pool, "-m", "el2n", "-K", 2, "-t", 1, "-o", first).exit_code == 0
    r = run("score", first, "-m", "grand", "--grand-at", "init", "-K", 2, "-o", second)
    assert r.exit_code == 0, r.stderr
    a, b = pq.read_table(first), pq.read_table(second)
    assert b.column("el2n").equals(a.column("el2n"))
    assert set(read_provenance(second)["scores"]) == {"el2n", "grand"}
    assert read_provenance(second)["scores"]["grand"]["t_effective"] == 0
    # In place, with --overwrite: the grand column is replaced, el2n kept.
    r = run("score", second, "-m", "grand", "-K", 2, "-t", 1, "-o", second, "--overwrite")
    assert r.exit_code == 0, r.stderr
    c = pq.read_table(second)
    assert c.column_names.count("grand") == 1 and c.column("el2n").equals(a.column("el2n"))
    assert read_provenance(second)["scores"]["grand"]["grand_at"] == "checkpoint"


def test_cross_fit_never_scores_an_example_with_a_model_that_saw_it(files, tmp_path):
    d, pool, holdout, il = files
    cf = tmp_path / "cf"
    r = run("il", "train", pool, "--cross-fit", "-o", cf, "--epochs", "5", "--hidden", "8")
    assert r.exit_code == 0, r.stderr
    assign = pq.read_table(cf / "assignment.parquet")
    halves = dict(zip(assign.column("id").to_pylist(), assign.column("half").to_pylist()))
    assert sorted(halves) == [f"ex-{i:05d}" for i in range(120)]
    labels = pq.read_table(pool).column("label").to_pylist()
    for c in set(labels):  # class-balanced halves
        counts = [sum(1 for i, l in zip(sorted(halves), labels) if l == c and halves[i] == h) for h in (0, 1)]
        assert abs(counts[0] - counts[1]) <= 1
    for h in (0, 1):
        saw = json.loads((cf / f"half{h}" / "config.json").read_text())["trained_on"]["rows"]
        assert saw == sum(1 for v in halves.values() if v == h)
    out = tmp_path / "s.parquet"
    r = run("score", pool, "--il", cf, "-m", "rho", "-K", 1, "-t", 1, "-o", out)
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    X = torch.from_numpy(embedding_array(t.column("embedding")))
    y = torch.tensor([int(v[1]) for v in t.column("label").to_pylist()])
    models = [load_head(cf / f"half{h}")[0] for h in (0, 1)]
    with torch.no_grad():
        other = np.array([F.cross_entropy(models[1 - halves[i]](X[j:j + 1]).double(), y[j:j + 1]).item()
                          for j, i in enumerate(t.column("id").to_pylist())])
    np.testing.assert_allclose(t.column("il_loss").to_numpy(), other, atol=1e-6)


def test_torchscript_il_model_with_label_mapping(files, tmp_path):
    d, pool, holdout, il = files
    head, cfg = load_head(il)
    ts = tmp_path / "ext" / "model.pt"
    ts.parent.mkdir()
    torch.jit.script(head).save(str(ts))
    (ts.parent / "labels.json").write_text(json.dumps(cfg["labels"]))
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run("score", pool, "--il", il, "-m", "rho", "-K", 1, "-t", 1, "-o", a).exit_code == 0
    r = run("score", pool, "--il", ts, "--trust-torchscript", "-m", "rho", "-K", 1, "-t", 1, "-o", b)
    assert r.exit_code == 0, r.stderr
    np.testing.assert_allclose(pq.read_table(a).column("il_loss").to_numpy(), pq.read_table(b).column("il_loss").to_numpy(), atol=1e-6)


def _fails(args, out: Path, *fragments):
    r = run(*args)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    line = r.stderr.strip()
    assert line.startswith("curate: error:") and "\n" not in line, line
    for f in fragments:
        assert f in line, line
    assert not out.exists()


def test_bad_inputs(files, tmp_path):
    d, pool, holdout, il = files
    out = tmp_path / "o.parquet"
    X, y = clusters(30, d=16, classes=4, seed=9)
    unseen = write_pool(tmp_path / "unseen.parquet", X, y)
    _fails(["score", unseen, "--il", il, "-m", "rho", "-K", 1, "-o", out], out, "'c3'", "never seen")
    wide = write_pool(tmp_path / "wide.parquet", clusters(30, d=8, classes=3)[0], y % 3)
    _fails(["score", wide, "--il", il, "-m", "rho", "-K", 1, "-o", out], out, "embedding_model.dimension is 16 vs 8", "curate il train")
    nolabel = write_pool(tmp_path / "nolabel.parquet", X)
    _fails(["score", nolabel, "-m", "el2n", "-o", out], out, "no 'label' column")
    Xbad = X.copy()
    Xbad[7, 3] = np.nan
    nan = write_pool(tmp_path / "nan.parquet", Xbad, y % 3)
    _fails(["score", nan, "-m", "el2n", "-o", out], out, "non-finite", "row 7")
    _fails(["score", pool, "-m", "rho", "-o", out], out, "--il")
    _fails(["score", tmp_path / "missing.parquet", "-m", "el2n", "-o", out], out, "missing.parquet", "no such file")
    _fails(["il", "train", nolabel, "-o", tmp_path / "il2"], tmp_path / "il2", "label")
    _fails(["score", pool, "--il", tmp_path / "no-il", "-m", "rho", "-o", out], out, "no-il")
    out.write_bytes(b"x")
    r = run("score", pool, "-m", "el2n", "-o", out)
    assert r.exit_code == 2 and "--overwrite" in r.stderr and out.read_bytes() == b"x"


def test_streamed_embeddings_name_the_file_row(tmp_path):
    from curate.errors import InputError
    from curate.io.parquet import read_embeddings

    X, y = clusters(10, d=4, classes=2)
    X[7, 1] = np.inf
    path = write_pool(tmp_path / "p.parquet", X, y)
    with pytest.raises(InputError, match="row 7"):
        read_embeddings(path, batch_rows=3)
    X[7, 1] = 0
    write_pool(tmp_path / "q.parquet", X, y)
    np.testing.assert_array_equal(read_embeddings(tmp_path / "q.parquet", batch_rows=3), X)


def test_pinned_bytes_of_every_score_column(tmp_path):
    """The redesign of the score methods must not move a single byte (fixture from the code before it)."""
    from pinned_helpers import pinned_run

    want = json.loads((Path(__file__).parent / "fixtures" / "score_pinned.json").read_text())
    assert pinned_run(tmp_path) == want
