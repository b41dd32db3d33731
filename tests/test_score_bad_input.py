"""`curate score` bad inputs and options: one `curate: error:` line naming the problem, exit 2, nothing written.

Each row: (case id, extra arguments, fragments the error line must hold). Inputs are written once
per module; every case runs in that directory and must leave it exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import assert_fails, run
from curate.io.parquet import embedding_column, write_table
from score_helpers import clusters, write_pool


def write_with_model(path: Path, X, labels, **model) -> Path:
    """A pool whose provenance records these embedding-model fields (name, sha256, normalize, image_size, ...)."""
    cols = {"id": pa.array([f"r{i}" for i in range(len(X))]), "label": pa.array([f"c{v}" for v in labels]),
            "embedding": embedding_column(X)}
    rec = {"name": "synthetic", "sha256": "a" * 64, "dimension": X.shape[1]} | model
    write_table(pa.table(cols), path, {"step": "embed", "embedding_model": rec})
    return path


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    X, y = clusters(40, d=6, classes=2, seed=0)
    write_pool(d / "pool.parquet", X, y)
    write_pool(d / "target.parquet", X[:20], ids=[f"t{i}" for i in range(20)])
    write_pool(d / "nolabel.parquet", X)
    write_pool(d / "oneclass.parquet", X, np.zeros(40, dtype=int))
    y1 = y.copy()
    y1[5] = 2
    write_pool(d / "lonely.parquet", X, y1)
    write_pool(d / "dup.parquet", X[:3], [0, 1, 0], ids=["a", "b", "a"])
    write_pool(d / "empty.parquet", X[:0], [], ids=[])
    Xn = X.copy()
    Xn[11, 2] = np.inf
    write_pool(d / "nonfinite.parquet", Xn, y)
    write_table(pa.table({"id": pa.array(["a", None, "c"]), "label": pa.array(["x", "y", "x"]),
                          "embedding": embedding_column(X[:3])}), d / "nullid.parquet", {"step": "embed"})
    write_table(pa.table({"id": pa.array(["a", "b", "c", "d"]), "label": pa.array([1.0, float("nan"), 1.0, 2.0]),
                          "embedding": embedding_column(X[:4])}), d / "nanlabel.parquet", {"step": "embed"})
    write_table(pa.table({"id": pa.array(["a", "b"]), "label": pa.array(["x", "y"])}), d / "noemb.parquet", {"step": "embed"})
    write_table(pa.table({"embedding": embedding_column(X[:2])}), d / "noid.parquet", {"step": "embed"})
    write_pool(d / "othermodel.parquet", X[:20], ids=[f"t{i}" for i in range(20)], model_sha="b" * 64)
    write_with_model(d / "norm_pool.parquet", X, y, normalize=True, image_size=224)
    write_with_model(d / "norm_target.parquet", X[:20], y[:20], normalize=False, image_size=224)
    write_with_model(d / "size_target.parquet", X[:20], y[:20], normalize=True, image_size=260)
    Xh, yh = clusters(40, d=6, classes=2, seed=1)
    write_pool(d / "holdout.parquet", Xh, yh, ids=[f"h{i}" for i in range(40)])
    write_with_model(d / "holdout_other.parquet", Xh, yh, name="other-model", sha256="c" * 64)
    write_with_model(d / "holdout_norm.parquet", Xh, yh, normalize=False, image_size=224)
    for name, src in (("il", "holdout"), ("il_other", "holdout_other"), ("il_norm", "holdout_norm")):
        r = run("il", "train", d / f"{src}.parquet", "-o", d / name, "--epochs", 2, "--hidden", 4)
        assert r.exit_code == 0, r.stderr
    (d / "exists.parquet").write_bytes(b"not mine")
    return d


P = "pool.parquet"
EL2N = [P, "-m", "el2n"]
GIO = [P, "-m", "gio", "--target", "target.parquet"]

CASES = [
    # numeric options: negative, zero, huge, non-finite
    ("seeds-0", EL2N + ["--seeds", "0"], ["--seeds 0", "[1, 1000]"]),
    ("seeds-huge", EL2N + ["--seeds", "100000"], ["--seeds 100000"]),
    ("epochs-neg", EL2N + ["--epochs", "-1"], ["--epochs -1"]),
    ("epochs-huge", EL2N + ["--epochs", "10000000"], ["--epochs 10000000"]),
    ("hidden-0", EL2N + ["--hidden", "0"], ["--hidden 0"]),
    ("hidden-neg", EL2N + ["--hidden", "-5"], ["--hidden -5"]),
    ("depth-0", EL2N + ["--depth", "0"], ["--depth 0"]),
    ("depth-huge", EL2N + ["--depth", "1000"], ["--depth 1000"]),
    ("dropout-1.5", EL2N + ["--dropout", "1.5"], ["--dropout 1.5", "[0, 1)"]),
    ("dropout-neg", EL2N + ["--dropout", "-0.1"], ["--dropout -0.1"]),
    ("dropout-nan", EL2N + ["--dropout", "nan"], ["--dropout nan"]),
    ("batch-0", EL2N + ["--batch-size", "0"], ["--batch-size 0"]),
    ("lr-neg", EL2N + ["--lr", "-0.1"], ["--lr -0.1"]),
    ("lr-0", EL2N + ["--lr", "0"], ["--lr 0"]),
    ("lr-nan", EL2N + ["--lr", "nan"], ["--lr nan", "finite"]),
    ("lr-inf", EL2N + ["--lr", "inf"], ["--lr inf"]),
    ("wd-neg", EL2N + ["--weight-decay", "-1"], ["--weight-decay -1"]),
    ("seed-neg", EL2N + ["--seed", "-1"], ["--seed -1"]),
    ("seed-huge", EL2N + ["--seed", str(2**40)], [f"--seed {2**40}"]),
    ("lq-folds-1", [P, "-m", "label_quality", "--lq-folds", "1"], ["--lq-folds 1"]),
    ("gio-k-0", GIO + ["--gio-k", "0"], ["--gio-k 0"]),
    ("budget-0", GIO + ["--budget", "0"], ["--budget 0"]),
    ("budget-over-pool", GIO + ["--budget", "500"], ["--budget 500", "40 rows"]),
    ("max-iter-neg", GIO + ["--max-iter", "-1"], ["--max-iter -1"]),
    ("gio-lr-0", GIO + ["--gio-lr", "0"], ["--gio-lr 0"]),
    ("gio-lr-nan", GIO + ["--gio-lr", "nan"], ["--gio-lr nan"]),
    ("gio-first-neg", GIO + ["--gio-first-steps", "-1"], ["--gio-first-steps -1"]),
    ("gio-steps-neg", GIO + ["--gio-steps", "-1"], ["--gio-steps -1"]),
    ("gio-init-neg", GIO + ["--gio-init-points", "-1"], ["--gio-init-points -1"]),
    ("clusters-1", GIO + ["--clusters", "1"], ["--clusters 1"]),
    ("threads-0", EL2N + ["--threads", "0"], ["--threads 0"]),
    ("threads-neg", EL2N + ["--threads", "-2"], ["--threads -2"]),
    ("chunk-0", EL2N + ["--chunk", "0"], ["--chunk 0"]),
    ("device-tpu", EL2N + ["--device", "tpu"], ["--device tpu", "cpu"]),
    # methods and what they need
    ("rho-no-il", [P, "-m", "rho"], ["--method rho needs --il"]),
    ("gio-no-target", [P, "-m", "gio"], ["--method gio needs --target"]),
    ("il-missing", [P, "-m", "rho", "--il", "no-il"], ["no-il"]),
    ("target-missing", [P, "-m", "gio", "--target", "missing.parquet"], ["missing.parquet"]),
    # the pool itself
    ("pool-missing", ["missing.parquet", "-m", "el2n"], ["missing.parquet", "no such file"]),
    ("no-embedding", ["noemb.parquet", "-m", "el2n"], ["noemb.parquet", "no 'embedding' column"]),
    ("no-id", ["noid.parquet", "-m", "el2n"], ["noid.parquet", "no 'id' column"]),
    ("empty", ["empty.parquet", "-m", "el2n"], ["empty.parquet", "empty"]),
    ("dup-id", ["dup.parquet", "-m", "el2n"], ["duplicate id 'a'"]),
    ("null-id", ["nullid.parquet", "-m", "el2n"], ["id is null at row 1"]),
    ("no-label", ["nolabel.parquet", "-m", "el2n"], ["no 'label' column"]),
    ("no-label-lq", ["nolabel.parquet", "-m", "label_quality"], ["no 'label' column", "label_quality"]),
    ("one-class", ["oneclass.parquet", "-m", "el2n"], ["every row has label 'c0'", "at least 2 classes"]),
    ("one-class-lq", ["oneclass.parquet", "-m", "label_quality"], ["at least 2 classes", "label_quality"]),
    ("lonely-class", ["lonely.parquet", "-m", "grand"], ["class 'c2' has 1 row", "grand"]),
    ("nan-label", ["nanlabel.parquet", "-m", "el2n"], ["null or NaN for id b", "--drop-unlabelled"]),
    ("nonfinite-emb", ["nonfinite.parquet", "-m", "el2n"], ["non-finite", "row 11"]),
    # embeddings that do not match: target and IL model
    ("target-other-model", GIO[:3] + ["--target", "othermodel.parquet"], ["embedding_model.sha256", "re-run `curate embed`"]),
    ("target-normalize", ["norm_pool.parquet", "-m", "gio", "--target", "norm_target.parquet"], ["embedding_model.normalize is False vs True"]),
    ("target-image-size", ["norm_pool.parquet", "-m", "gio", "--target", "size_target.parquet"], ["embedding_model.image_size is 260 vs 224"]),
    ("il-other-model", [P, "-m", "rho", "--il", "il_other"], ["embedding_model.sha256", "curate il train"]),
    ("il-normalize", ["norm_pool.parquet", "-m", "rho", "--il", "il_norm"], ["embedding_model.normalize is False vs True", "curate il train"]),
    ("existing-output", EL2N + ["-o", "exists.parquet"], ["exists.parquet", "--overwrite"]),
]


@pytest.mark.parametrize("args, fragments", [pytest.param(a, f, id=i) for i, a, f in CASES])
def test_bad_input(d, args, fragments):
    full = [d / a if a.endswith(".parquet") or a.startswith(("il", "no-il")) else a for a in args]
    if "-o" not in args:
        full += ["-o", d / "out.parquet"]
    assert_fails(["score", *full], *fragments, out=None if "-o" in args else d / "out.parquet", root=d)
    if "-o" in args:
        assert (d / "exists.parquet").read_bytes() == b"not mine"


# typer parses these before curate sees them: exit 2 and the option named, nothing written.
PARSED = [
    ("method-unknown", EL2N[:1] + ["-m", "magic"], "magic"),
    ("arch-unknown", EL2N + ["--arch", "cnn"], "--arch"),
    ("grand-at-unknown", EL2N + ["--grand-at", "end"], "--grand-at"),
    ("estimator-unknown", GIO + ["--gio-estimator", "mmd"], "--gio-estimator"),
    ("v-init-unknown", GIO + ["--gio-v-init", "zero"], "--gio-v-init"),
    ("seeds-malformed", EL2N + ["--seeds", "ten"], "--seeds"),
    ("lr-malformed", EL2N + ["--lr", "fast"], "--lr"),
]


@pytest.mark.parametrize("args, fragment", [pytest.param(a, f, id=i) for i, a, f in PARSED])
def test_parse_errors(d, args, fragment):
    full = [d / a if a.endswith(".parquet") else a for a in args] + ["-o", d / "out.parquet"]
    r = run("score", *full)
    assert r.exit_code == 2 and fragment in r.stderr, r.stderr
    assert not (d / "out.parquet").exists()
