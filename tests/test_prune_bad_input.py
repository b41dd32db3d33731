"""Bad input to `curate prune`: one `curate: error:` line naming the problem, exit 2, nothing written.

Each case is (arguments, fragments of the error line); ``{s}`` is the scored file, ``{src}`` a JSONL
source recorded in its provenance, ``{bare}`` a scored file with no recorded input, ``{img}`` an image
folder source with its scored file ``{simg}``, and every other name a path inside the test directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import assert_fails
from curate.io.parquet import embedding_column, write_table
from curate.io.sources import open_source

N = 30


def _scored(path: Path, ids: list[str], source=None) -> None:
    rng = np.random.default_rng(1)
    n = len(ids)
    prov: dict = {"step": "score", "source": {"id_rule": "<relative file>:<row>"}}
    if source is not None:
        src = open_source(source)
        prov = {"inputs": src.fingerprint(), "source": {"root": str(src.root), "id_rule": "<relative file>:<row>"}}
    write_table(pa.table({
        "id": ids,
        "label": [f"c{i % 2}" for i in range(n)],
        "embedding": embedding_column(rng.normal(size=(n, 2)).astype(np.float32)),
        "el2n": rng.random(n),
        "gio_selected": [i % 2 == 0 for i in range(n)],
        "empty": pa.array([None] * n, pa.float64()),
    }), path, prov)


@pytest.fixture
def paths(tmp_path):
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps({"t": i}) + "\n" for i in range(N)))
    _scored(tmp_path / "s.parquet", [f"train.jsonl:{i}" for i in range(N)], source=src)
    _scored(tmp_path / "bare.parquet", [f"train.jsonl:{i}" for i in range(N)])
    img = tmp_path / "img"
    for i in range(N):
        (img / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        (img / f"c{i % 2}" / f"{i}.png").write_bytes(bytes([i]))
    _scored(tmp_path / "simg.parquet", sorted(p.relative_to(img).as_posix() for p in img.rglob("*.png")), source=img)
    (tmp_path / "exists.parquet").write_bytes(b"mine")
    (tmp_path / "exists.csv").write_bytes(b"mine")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "f").write_bytes(b"mine")
    (tmp_path / "edir").mkdir()
    (tmp_path / "notparquet.parquet").write_text("hello")
    write_table(pa.table({"x": [1.0]}), tmp_path / "noid.parquet")
    return tmp_path


OK = ["--keep", "el2n > 0.5"]
CASES = [
    # conditions
    (["{s}", "--keep", "el2n >> 3"], ["not a condition"]),
    (["{s}", "--keep", "el2n in [q0.1 q0.9]"], ["not a condition"]),
    (["{s}", "--keep", ""], ["not a condition"]),
    (["{s}", "--keep", "el2n > high"], ["neither a number nor a quantile"]),
    (["{s}", "--keep", "el2n > qx"], ["is not a quantile"]),
    (["{s}", "--keep", "el2n in [q0.2, q1.5]"], ["outside [0, 1]"]),
    (["{s}", "--keep", "el2n > q-0.1"], ["outside [0, 1]"]),
    (["{s}", "--keep", "el2n > nan"], ["NaN is not a usable bound"]),
    (["{s}", "--keep", "el2n > null"], ["null compares only with == or !="]),
    (["{s}", "--keep", "el2n in [null, 1]"], ["null cannot bound an interval"]),
    (["{s}", "--keep", "el2n in [3, 1]"], ["malformed condition", "interval is empty"]),
    (["{s}", "--keep", "el2n in [q0.9, q0.1]"], ["malformed condition", "interval is empty"]),
    (["{s}", "--keep", "el2n in [q0.5, -1]"], ["malformed condition", "resolve to an empty interval"]),
    (["{s}", "--keep", "nonesuch > 1"], ["no column 'nonesuch'"]),
    (["{s}", "--keep", "label > 1"], ["not a score"]),
    (["{s}", "--keep", "gio_selected in [q0.1, q0.5]"], ["quantiles of the boolean column"]),
    (["{s}", "--keep", "empty > q0.5"], ["'empty' has no value that is neither null nor NaN"]),
    (["{s}", "--keep", "el2n > 100"], ["no row is kept", "'el2n > 100' 30", "--allow-empty"]),
    (["{s}", "--keep", "empty == null", "--keep", "label == null"], ["no row is kept", "'label == null' 30"]),
    (["{s}"], ["nothing to do"]),
    # budgets and seeds
    (["{s}", "--top", "-1", "--by", "el2n"], ["--top -1", "from 1 to"]),
    (["{s}", "--top", "0", "--by", "el2n"], ["--top 0", "from 1 to"]),
    (["{s}", "--top", str(10**13), "--by", "el2n"], ["from 1 to"]),
    (["{s}", "--top", "abc", "--by", "el2n"], ["--top 'abc'", "not an integer"]),
    (["{s}", "--top", "1.5", "--by", "el2n"], ["not an integer"]),
    (["{s}", "--fraction", "0", "--by", "el2n"], ["--fraction 0", "(0, 1]"]),
    (["{s}", "--fraction", "1.5", "--by", "el2n"], ["(0, 1]"]),
    (["{s}", "--fraction", "nan", "--by", "el2n"], ["--fraction nan", "(0, 1]"]),
    (["{s}", "--fraction", "-0.1", "--by", "el2n"], ["(0, 1]"]),
    (["{s}", "--fraction", "half", "--by", "el2n"], ["not a number"]),
    (["{s}", "--top", "5", "--fraction", "0.5", "--by", "el2n"], ["not both"]),
    (["{s}", "--top", "5"], ["need --by"]),
    (["{s}", *OK, "--by", "el2n"], ["pass one of them"]),
    (["{s}", "--top", "5", "--by", "nonesuch"], ["no such column"]),
    (["{s}", "--top", "5", "--by", "label"], ["not a score"]),
    (["{s}", *OK, "--random", "--seed", "-1"], ["--seed -1", "0 to"]),
    (["{s}", *OK, "--random", "--seed", str(2**32)], ["0 to"]),
    (["{s}", *OK, "--random", "--seed", "x"], ["not an integer"]),
    # paths
    (["{s}", *OK, "--dropped", "{o}"], ["same output path"]),
    (["{s}", *OK, "-o", "{s}"], ["output is the input"]),
    (["{s}", *OK, "--dropped", "{s}"], ["output is the input", "s.parquet"]),
    (["{s}", *OK, "--source", "{src}", "-o", "{src}"], ["output is the input"]),
    (["{s}", *OK, "--source", "{src}", "--dropped", "{src}", "-o", "{tmp}/k.jsonl"], ["output is the input", "train.jsonl"]),
    (["{s}", *OK, "-o", "{tmp}/exists.parquet"], ["already exists", "--overwrite"]),
    (["{s}", *OK, "--dropped", "{tmp}/exists.csv"], ["already exists", "--overwrite"]),
    (["{s}", *OK, "--dropped", "{tmp}/adir", "--overwrite"], ["--dropped", "is a directory"]),
    (["{s}", *OK, "-o", "{tmp}/edir", "--overwrite"], ["is a directory"]),
    (["{s}", *OK, "-o", "{tmp}/adir", "--overwrite"], ["not written by curate"]),
    (["{simg}", *OK, "--source", "{img}", "-o", "{img}/out"], ["inside --source"]),
    (["{tmp}/missing.parquet", *OK], ["no such file"]),
    (["{tmp}/notparquet.parquet", *OK], ["not a readable Parquet file"]),
    (["{tmp}/noid.parquet", *OK], ["no 'id' column"]),
    (["{bare}", *OK, "--source", "{src}", "-o", "{tmp}/k.jsonl"], ["records no embedded input"]),
    (["{s}", *OK, "--source", "{tmp}/nope.jsonl", "-o", "{tmp}/k.jsonl"], ["no such file or directory"]),
    (["{s}", *OK, "--source", "{src}", "-o", "{tmp}/k.csv"], ["must end in .jsonl"]),
    (["{simg}", *OK, "--source", "{img}", "-o", "{tmp}/k.csv"], ["the output is a folder"]),
    (["{simg}", *OK, "--source", "{src}", "-o", "{tmp}/k.jsonl"], ["changed since it was embedded"]),
    (["{s}", "--keep", "el2n != null", "--keep", "el2n > 2"], ["no row is kept", "'el2n > 2' 30"]),
]


@pytest.mark.parametrize("args,fragments", CASES, ids=[" ".join(a[1:4]) or "none" for a, _ in CASES])
def test_bad_input(paths, args, fragments):
    names = {"s": paths / "s.parquet", "bare": paths / "bare.parquet", "src": paths / "train.jsonl",
             "img": paths / "img", "simg": paths / "simg.parquet", "o": paths / "o.parquet", "tmp": paths}
    argv = ["prune"] + [a.format(**names) for a in args]
    if "-o" not in argv:
        argv += ["-o", str(names["o"])]
    assert_fails(argv, *fragments, out=names["o"], root=paths)


def test_matrix_is_large_enough():
    assert len(CASES) >= 35
