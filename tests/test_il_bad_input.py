"""`curate il train` options and damaged IL model directories: one error line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import assert_fails, run
from score_helpers import clusters, write_pool


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ilbad")
    X, y = clusters(60, d=8, classes=3, seed=5)
    hold = write_pool(d / "hold.parquet", X, y)
    r = run("il", "train", hold, "-o", d / "il", "--epochs", 2, "--hidden", 8)
    assert r.exit_code == 0, r.stderr
    return d, hold, d / "il"


@pytest.mark.parametrize("args,fragments", [
    (["--lr", "-0.1"], ["--lr -0.1", "> 0"]),
    (["--lr", "0"], ["--lr 0.0"]),
    (["--lr", "nan"], ["--lr nan"]),
    (["--weight-decay", "-1"], ["--weight-decay -1.0", ">= 0"]),
    (["--hidden", "0"], ["--hidden 0", "from 1"]),
    (["--hidden", "-5"], ["--hidden -5"]),
    (["--hidden", "100000000"], ["--hidden 100000000"]),
    (["--depth", "0"], ["--depth 0"]),
    (["--depth", "1000"], ["--depth 1000"]),
    (["--epochs", "0"], ["--epochs 0"]),
    (["--epochs", "-1"], ["--epochs -1"]),
    (["--epochs", "99999999999"], ["--epochs 99999999999"]),
    (["--patience", "0"], ["--patience 0"]),
    (["--val-fraction", "0"], ["--val-fraction 0.0", "between 0 and 1"]),
    (["--val-fraction", "1"], ["--val-fraction 1.0"]),
    (["--val-fraction", "1.5"], ["--val-fraction 1.5"]),
    (["--batch-size", "0"], ["--batch-size 0"]),
    (["--seed", "-1"], ["--seed -1", "0 to"]),
    (["--seed", "99999999999"], ["--seed 99999999999"]),
    (["--dropout", "1.5"], ["--dropout 1.5", "[0, 1)"]),
    (["--dropout", "-0.1"], ["--dropout -0.1"]),
    (["--threads", "0"], ["--threads 0"]),
    (["--threads", "-2"], ["--threads -2"]),
    (["--device", "gpu9"], ["--device gpu9"]),
    (["--arch", "cnn"], ["--arch cnn", "linear, mlp"]),
])
def test_il_train_rejects_bad_numbers(files, tmp_path, args, fragments):
    d, hold, _ = files
    assert_fails(["il", "train", hold, "-o", tmp_path / "il", *args], *fragments, out=tmp_path / "il", root=d)


def _damaged(files, tmp_path, edit):
    d, hold, il = files
    bad = tmp_path / "bad-il"
    shutil.copytree(il, bad)
    cfg = json.loads((bad / "config.json").read_text())
    edit(bad, cfg)
    return hold, bad


def _set(path, value):
    def edit(bad, cfg):
        node = cfg
        for k in path[:-1]:
            node = node[k]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        (bad / "config.json").write_text(json.dumps(cfg))
    return edit


def _write(name, data):
    def edit(bad, cfg):
        if data is None:
            (bad / name).unlink()
        else:
            (bad / name).write_bytes(data)
    return edit


@pytest.mark.parametrize("edit,fragments", [
    (_set(["architecture"], KeyError), ["config.json", "'architecture'"]),
    (_set(["architecture"], "mlp"), ["config.json", "'architecture'"]),
    (_set(["architecture", "arch"], "resnet"), ["config.json", "'architecture.arch'", "resnet"]),
    (_set(["architecture", "in_dim"], "eight"), ["config.json", "'architecture.in_dim'", "'eight'"]),
    (_set(["architecture", "in_dim"], 9), ["config.json", "'architecture.in_dim'", "is 9", "takes 8"]),
    (_set(["architecture", "n_classes"], KeyError), ["config.json", "'architecture.n_classes'"]),
    (_set(["architecture", "hidden"], [16]), ["model.safetensors", "do not match"]),
    (_set(["architecture", "hidden"], "8"), ["config.json", "'architecture.hidden'"]),
    (_set(["architecture", "dropout"], 2), ["config.json", "'architecture.dropout'"]),
    (_set(["labels"], KeyError), ["config.json", "'labels'"]),
    (_set(["labels"], "c0,c1,c2"), ["config.json", "'labels'", "JSON list"]),
    (_set(["labels"], ["c0", "c1"]), ["config.json", "'labels'", "2 classes", "n_classes is 3"]),
    (_set(["labels"], ["c0", "c0", "c1"]), ["config.json", "'labels'", "twice"]),
    (_set(["kind"], "forest"), ["config.json", "'kind'", "forest"]),
    (_write("config.json", b"{not json"), ["config.json", "not valid JSON"]),
    (_write("config.json", b"[1, 2]"), ["config.json", "JSON object"]),
    (_write("config.json", b"\xff\xfe"), ["config.json", "not valid JSON"]),
    (_write("config.json", None), ["not a curate model directory", "config.json"]),
    (_write("model.safetensors", None), ["model.safetensors", "missing"]),
    (_write("model.safetensors", b"garbage"), ["model.safetensors", "not a readable safetensors file"]),
])
def test_damaged_model_directory_is_one_clear_error(files, tmp_path, edit, fragments):
    hold, bad = _damaged(files, tmp_path, edit)
    out = tmp_path / "run"
    assert_fails(["train", hold, "--il", bad, "--big-batch", 10, "-o", out], *fragments, out=out, root=bad)
    assert_fails(["il", "info", bad], *fragments, root=bad)


def test_truncated_weights(files, tmp_path):
    d, hold, il = files
    hold, bad = _damaged(files, tmp_path, lambda b, c: None)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert_fails(["il", "info", bad], "model.safetensors", root=bad)


def test_parquet_as_il_names_the_mistake(files, tmp_path):
    d, hold, il = files
    line = assert_fails(["train", hold, "--il", hold, "--big-batch", 10, "-o", tmp_path / "r"], "this is a Parquet file",
                        "--il takes a `curate il train` directory", out=tmp_path / "r")
    assert "TorchScript" not in line and "labels.json" not in line
    (tmp_path / "notes.txt").write_text("hello")
    assert_fails(["il", "info", tmp_path / "notes.txt"], "not an IL model")
