"""`curate embed` bad inputs: each case names the problem in one line, exits 2 and writes nothing.

Every case builds its inputs under ``tmp_path`` first; ``assert_fails(..., root=tmp_path)``
then proves the run left the directory exactly as it was (no output, no parts, no temp files).
"""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import assert_fails
from embed_helpers import write_digit_folder, write_jsonl


def _jsonl(p, rows):
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _png(p):
    from PIL import Image

    p.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(p)
    return p


def good(t):
    return write_jsonl(t / "good.jsonl")


def text(t):
    return [good(t), "--text-column", "text"]


def image_table(t, value):
    _png(t / "imgs" / "a.png")
    (t / "tbl.csv").write_text(f"path\nimgs/a.png\n{value}\n")
    return [t / "tbl.csv", "--image-column", "path"]


# (case id, build(tmp_path) -> args before "-o OUT", fragments of the error line)
CASES = [
    ("missing file", lambda t: [t / "nope.jsonl", "--text-column", "text"], ["nope.jsonl", "no such file"]),
    ("corrupt parquet", lambda t: [(t / "x.parquet").write_bytes(b"PAR1garbage") and t / "x.parquet", "--text-column", "text"],
     ["x.parquet", "Parquet"]),
    ("non-utf8 jsonl", lambda t: [(t / "x.jsonl").write_bytes(b'{"text": "caf\xe9"}\n') and t / "x.jsonl", "--text-column", "text"],
     ["x.jsonl", "not valid UTF-8"]),
    ("non-utf8 csv", lambda t: [(t / "x.csv").write_bytes(b"text\ncaf\xe9\n") and t / "x.csv", "--text-column", "text"],
     ["x.csv", "not valid UTF-8"]),
    ("header-only csv", lambda t: [(t / "h.csv").write_text("text,label\n") and t / "h.csv", "--text-column", "text"],
     ["h.csv", "no rows"]),
    ("empty file", lambda t: [(t / "e.jsonl").write_text("") or t / "e.jsonl", "--text-column", "text"], ["e.jsonl", "empty"]),
    ("missing text column", lambda t: [good(t), "--text-column", "body"], ["no column 'body'", "columns present: id, text, label"]),
    ("missing label column", lambda t: text(t) + ["--label-column", "y"], ["no column 'y'"]),
    ("missing id column", lambda t: text(t) + ["--id-column", "key"], ["no column 'key'"]),
    ("null id", lambda t: [_jsonl(t / "n.jsonl", [{"id": "a", "text": "x"}, {"id": None, "text": "y"}]), "--text-column", "text",
                           "--id-column", "id"], ["n.jsonl: row 1", "empty or null"]),
    ("empty csv id", lambda t: [(t / "n.csv").write_text("id,text\na,x\n,y\n") and t / "n.csv", "--text-column", "text",
                                "--id-column", "id"], ["n.csv: row 1", "empty or null"]),
    ("float id", lambda t: [_jsonl(t / "f.jsonl", [{"id": 1.5, "text": "x"}]), "--text-column", "text", "--id-column", "id"],
     ["f.jsonl", "strings or integers"]),
    ("mixed JSON id types", lambda t: [_jsonl(t / "m.jsonl", [{"id": 1, "text": "x"}, {"id": "b", "text": "y"}]), "--text-column",
                                       "text", "--id-column", "id"], ["m.jsonl", "row 1", "write them all as strings"]),
    ("duplicate id in one file", lambda t: [_jsonl(t / "d.jsonl", [{"id": "x", "text": "a"}, {"id": "y", "text": "b"},
                                                                     {"id": "x", "text": "c"}]),
                                            "--text-column", "text", "--id-column", "id"],
     ["duplicate id 'x'", "d.jsonl row 0", "d.jsonl row 2"]),
    ("duplicate id across files", lambda t: _two_files(t), ["duplicate id 'k'", "a.jsonl row 0", "b.jsonl row 1"]),
    ("null label", lambda t: [_jsonl(t / "l.jsonl", [{"text": "a", "y": "p"}, {"text": "b", "y": None}]), "--text-column", "text",
                              "--label-column", "y"], ["l.jsonl: row 1", "null or NaN", "--drop-unlabelled"]),
    ("NaN label", lambda t: _nan_label(t), ["nan.parquet: row 1", "null or NaN"]),
    ("null text", lambda t: [_jsonl(t / "t.jsonl", [{"text": "a"}, {"text": None}]), "--text-column", "text"],
     ["t.jsonl: row 1", "is null", "--on-error skip"]),
    ("null text in a worker process", lambda t: [_jsonl(t / "t.jsonl", [{"text": "a"}, {"text": None}]), "--text-column", "text",
                                                 "--engine", "process", "--threads", "1"], ["t.jsonl: row 1", "is null"]),
    ("empty csv text", lambda t: [(t / "t.csv").write_text("text\na\n\"\"\n") and t / "t.csv", "--text-column", "text"],
     ["t.csv: row 1", "is empty", "--on-error skip"]),
    ("image path absolute", lambda t: image_table(t, str(_png(t / "abs.png"))), ["tbl.csv: row 1", "outside", "--allow-outside-paths"]),
    ("image path escapes", lambda t: (_png(t.parent / f"{t.name}-out.png"), image_table(t, f"../{t.name}-out.png"))[1],
     ["tbl.csv: row 1", "outside"]),
    ("corrupt image in folder", lambda t: _corrupt_folder(t), ["bad.png", "cannot read image", "--on-error skip"]),
    ("corrupt image in table", lambda t: ((t / "imgs").mkdir(), (t / "imgs" / "z.png").write_bytes(b"nope"),
                                          image_table(t, "imgs/z.png"))[2], ["z.png", "cannot read image"]),
    ("text and image column", lambda t: text(t) + ["--image-column", "label"], ["exactly one of --text-column or --image-column"]),
    ("no content column", lambda t: [good(t)], ["exactly one of", "columns present: id, text, label"]),
    ("reserved keep column", lambda t: text(t) + ["--keep-column", "embedding"], ["--keep-column embedding", "reserved"]),
    ("unknown format", lambda t: [(t / "x.txt").write_text("hi") and t / "x.txt", "--text-column", "text"], ["x.txt", "unknown table format"]),
    ("mixed formats", lambda t: _mixed(t), ["mixes table formats"]),
    ("glob matches nothing", lambda t: [str(t / "*.nothing"), "--text-column", "text"], ["matches no file"]),
    ("folder with text column", lambda t: [write_digit_folder(t / "digits", 1, 2), "--text-column", "text"], ["image folder"]),
    ("bad on-error", lambda t: text(t) + ["--on-error", "ignore"], ["--on-error ignore"]),
    ("bad engine", lambda t: text(t) + ["--engine", "spark"], ["--engine spark", "local, process"]),
    ("unknown model", lambda t: text(t) + ["--model", "no-such/model-x"], ["no-such/model-x", "never downloads"]),
    ("existing output", lambda t: ((t / "out.parquet").write_text("mine"), text(t))[1], ["out.parquet", "--overwrite"]),
    ("text model for an image folder", lambda t: [write_digit_folder(t / "digits", 1, 2), "--model", "other"], ["images use"]),
    ("unknown device", lambda t: text(t) + ["--device", "tpu"], ["--device tpu", "expected auto, cpu"]),
    ("malformed cuda index", lambda t: text(t) + ["--device", "cuda:x"], ["--device cuda:x"]),
]
NUMERIC = [
    ("--batch-size", "0"), ("--batch-size", "-1"), ("--batch-size", "100000000"),
    ("--image-size", "0"), ("--image-size", "-5"), ("--image-size", "100000"),
    ("--shard-size", "0"), ("--shard-size", "-3"), ("--workers", "0"), ("--workers", "1000"),
    ("--threads", "0"), ("--threads", "-2"),
]
CASES += [(f"{flag} {value}", lambda t: text(t), [f"{flag} {value}", "must be an integer from"]) for flag, value in NUMERIC]
NUMERIC_ARGS = {f"{flag} {value}": [flag, value] for flag, value in NUMERIC}


def _two_files(t):
    d = t / "two"
    d.mkdir()
    _jsonl(d / "a.jsonl", [{"id": "k", "text": "a"}])
    _jsonl(d / "b.jsonl", [{"id": "m", "text": "b"}, {"id": "k", "text": "c"}])
    return [d, "--text-column", "text", "--id-column", "id"]


def _nan_label(t):
    pq.write_table(pa.table({"text": ["a", "b"], "y": [1.0, math.nan]}), t / "nan.parquet")
    return [t / "nan.parquet", "--text-column", "text", "--label-column", "y"]


def _corrupt_folder(t):
    root = write_digit_folder(t / "digits", 1, 2)
    (root / "1" / "bad.png").write_bytes(b"not a png")
    return [root, "--image-size", "32"]


def _mixed(t):
    d = t / "mixed"
    d.mkdir()
    write_jsonl(d / "a.jsonl", 2)
    (d / "b.csv").write_text("text\nx\n")
    return [d, "--text-column", "text"]


def test_matrix_has_enough_cases():
    assert len(CASES) >= 35


@pytest.mark.parametrize("name,build,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, name, build, fragments):
    args = build(tmp_path) + NUMERIC_ARGS.get(name, [])
    out = tmp_path / "out.parquet"
    existed = out.exists()
    assert_fails(["embed", *args, "-o", out], *fragments, out=None if existed else out, root=tmp_path)
