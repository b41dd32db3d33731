"""`prune --source` writes exactly the records that were scored, for every input form `embed` accepts.

Each expected output comes from an independent parse (the csv / json modules, pyarrow for Parquet)
of the source, never from prune's own record splitting.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import assert_fails, run
from curate.io.parquet import embedding_column, write_table
from curate.io.sources import open_source


def scored_for(source, ids: list[str], path: Path, id_rule: str = "<relative file>:<row>") -> Path:
    """A scored file whose provenance records ``source`` as `curate embed` does; score s = +1, 0, -1 cyclically."""
    src = open_source(source)
    n = len(ids)
    table = pa.table({"id": ids, "embedding": embedding_column(np.zeros((n, 2), np.float32)),
                      "s": [float(1 - i % 3) for i in range(n)]})
    prov = {"inputs": src.fingerprint(), "source": {"kind": src.kind, "root": str(src.root), "id_rule": id_rule}}
    write_table(table, path, prov)
    return path


def kept_positions(n: int) -> list[int]:
    return [i for i in range(n) if 1 - i % 3 > 0]


def csv_records(text: str) -> list[list[str]]:
    """Header + non-blank records, as the csv module parses them."""
    return [r for r in csv.reader(io.StringIO(text, newline="")) if r]


def test_jsonl_with_bom_crlf_and_blank_lines(tmp_path):
    recs = [{"text": f"t{i}", "n": i} for i in range(10)]
    raw = "\ufeff" + "".join(json.dumps(r) + "\r\n" + ("\r\n  \r\n" if i % 4 == 1 else "") for i, r in enumerate(recs))
    src = tmp_path / "d.jsonl"
    src.write_bytes(raw.encode())
    parsed = [json.loads(l) for l in raw.lstrip("\ufeff").splitlines() if l.strip()]  # independent parse
    scored = scored_for(src, [f"d.jsonl:{i}" for i in range(len(parsed))], tmp_path / "s.parquet")
    out = tmp_path / "o.jsonl"
    r = run("prune", scored, "--keep", "s > 0", "--source", src, "-o", out)
    assert r.exit_code == 0, r.stderr
    got = [json.loads(l) for l in out.read_bytes().decode("utf-8-sig").splitlines()]
    assert got == [parsed[i] for i in kept_positions(len(parsed))]
    assert out.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in out.read_bytes()


def test_csv_with_bom_crlf_quoted_newlines_and_blank_lines(tmp_path):
    rows = [f'{i},"line one\r\nline, ""two"" {i}"' if i % 3 == 0 else f"{i},plain {i}" for i in range(12)]
    text = "\ufeffn,text\r\n" + "".join(r + "\r\n" + ("\r\n" if i == 4 else "") for i, r in enumerate(rows))
    src = tmp_path / "d.csv"
    src.write_bytes(text.encode())
    header, *records = csv_records(text.lstrip("\ufeff"))
    scored = scored_for(src, [f"d.csv:{i}" for i in range(len(records))], tmp_path / "s.parquet")
    out = tmp_path / "o.csv"
    r = run("prune", scored, "--keep", "s > 0", "--source", src, "-o", out)
    assert r.exit_code == 0, r.stderr
    got_header, *got = csv_records(out.read_bytes().decode("utf-8-sig"))
    assert got_header == header == ["n", "text"]
    assert got == [records[i] for i in kept_positions(len(records))]


def test_csv_with_id_column_uses_embeds_ids(tmp_path):
    text = "id,text\n" + "".join(f"{i:03d},x{i}\n" for i in range(9))
    src = tmp_path / "d.csv"
    src.write_text(text)
    # The ids embed stores for this column (whether it keeps "007" or reads 7) are the ones prune must match.
    embed_ids = [i for b in open_source(src).rows([], "id") for i in b.column("id").to_pylist()]
    assert len(embed_ids) == 9
    scored = scored_for(src, embed_ids, tmp_path / "s.parquet", id_rule="column id")
    out = tmp_path / "o.csv"
    r = run("prune", scored, "--keep", "s > 0", "--source", src, "-o", out)
    assert r.exit_code == 0, r.stderr
    _, *records = csv_records(text)
    assert csv_records(out.read_text())[1:] == [records[i] for i in kept_positions(9)]


def test_directory_of_tables_in_class_like_folders_is_tables_not_images(tmp_path):
    data = tmp_path / "data"
    files = {"a/x.csv": 5, "b/y.csv": 7}
    expected: dict[str, list[list[str]]] = {}
    ids = []
    for rel, n in files.items():
        p = data / rel
        p.parent.mkdir(parents=True)
        text = "text\n" + "".join(f"{rel} row {i}\n" for i in range(n))
        p.write_text(text)
        expected[rel] = csv_records(text)
        ids += [f"{rel}:{i}" for i in range(n)]
    (data / "a" / "pic.png").write_bytes(b"not really")  # an image beside the tables changes nothing
    scored = scored_for(data, ids, tmp_path / "s.parquet")
    out = tmp_path / "kept"
    r = run("prune", scored, "--keep", "s > 0", "--source", data, "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    score = {i: 1 - k % 3 for k, i in enumerate(ids)}
    for rel, recs in expected.items():
        keep = [recs[0]] + [rec for k, rec in enumerate(recs[1:]) if score[f"{rel}:{k}"] > 0]
        assert csv_records((out / rel).read_text()) == keep
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(files)


def test_glob_of_jsonl_and_directory_of_parquet(tmp_path):
    for k in range(3):
        (tmp_path / f"part-{k}.jsonl").write_text("".join(json.dumps({"v": f"{k}-{i}"}) + "\n" for i in range(4)))
    pattern = str(tmp_path / "part-*.jsonl")
    ids = [f"part-{k}.jsonl:{i}" for k in range(3) for i in range(4)]
    scored = scored_for(pattern, ids, tmp_path / "s.parquet")
    out = tmp_path / "kept"
    r = run("prune", scored, "--keep", "s > 0", "--source", pattern, "-o", out)
    assert r.exit_code == 0, r.stderr
    got = sorted(json.loads(l)["v"] for p in out.glob("*.jsonl") for l in p.read_text().splitlines())
    values = [f"{k}-{i}" for k in range(3) for i in range(4)]  # in the order of ids
    assert got == sorted(values[j] for j in kept_positions(12))

    pdir = tmp_path / "pq"
    pdir.mkdir()
    for k in range(2):
        pq.write_table(pa.table({"v": [10 * k + i for i in range(5)]}), pdir / f"p{k}.parquet")
    ids = [f"p{k}.parquet:{i}" for k in range(2) for i in range(5)]
    scored = scored_for(pdir, ids, tmp_path / "s2.parquet")
    out = tmp_path / "kept_pq"
    r = run("prune", scored, "--keep", "s > 0", "--source", pdir, "-o", out)
    assert r.exit_code == 0, r.stderr
    got = sorted(v for p in sorted(out.glob("*.parquet")) for v in pq.read_table(p).column("v").to_pylist())
    assert got == sorted([0, 1, 2, 3, 4, 10, 11, 12, 13, 14][j] for j in kept_positions(10))


def test_table_with_image_path_column(tmp_path):
    (tmp_path / "img").mkdir()
    lines = ["path,label"]
    for i in range(6):
        (tmp_path / "img" / f"{i}.png").write_bytes(bytes([i]))
        lines.append(f"img/{i}.png,c{i % 2}")
    src = tmp_path / "index.csv"
    src.write_text("\n".join(lines) + "\n")
    scored = scored_for(src, [f"index.csv:{i}" for i in range(6)], tmp_path / "s.parquet")
    out = tmp_path / "o.csv"
    r = run("prune", scored, "--keep", "s > 0", "--source", src, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert csv_records(out.read_text()) == [["path", "label"]] + [lines[i + 1].split(",") for i in kept_positions(6)]


def test_changed_source_is_refused_before_writing(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"t": i}) + "\n" for i in range(6)))
    scored = scored_for(src, [f"d.jsonl:{i}" for i in range(6)], tmp_path / "s.parquet")
    src.write_text("".join(json.dumps({"t": i + 1}) + "\n" for i in range(6)))  # same size, other bytes
    assert_fails(["prune", scored, "--keep", "s > 0", "--source", src, "-o", tmp_path / "o.jsonl"],
                 "changed since it was embedded", "re-run `curate embed`", root=tmp_path)


def test_output_and_dropped_commit_together(tmp_path, monkeypatch):
    """A failure after -o is fully written (here: a full disk in the --dropped writer) leaves neither output."""
    from curate.prune import writers

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"t": i}) + "\n" for i in range(6)))
    scored = scored_for(src, [f"d.jsonl:{i}" for i in range(6)], tmp_path / "s.parquet")
    before = sorted(p.name for p in tmp_path.iterdir())

    def disk_full(parts, path, name):
        Path(path).write_text("id,removed_by\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, "write_dropped", disk_full)
    r = run("prune", scored, "--keep", "s > 0", "--source", src, "-o", tmp_path / "o.jsonl", "--dropped", tmp_path / "d.csv")
    assert r.exit_code != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # neither output, no temporaries, no locks


def test_dropped_is_written_with_the_output(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"t": i}) + "\n" for i in range(6)))
    scored = scored_for(src, [f"d.jsonl:{i}" for i in range(6)], tmp_path / "s.parquet")
    out, dropped = tmp_path / "o.jsonl", tmp_path / "dropped.csv"
    r = run("prune", scored, "--keep", "s > 0", "--source", src, "-o", out, "--dropped", dropped)
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(dropped.read_text())))
    assert [r["id"] for r in rows] == [f"d.jsonl:{i}" for i in range(6) if i not in kept_positions(6)]
    assert {r["removed_by"] for r in rows} == {"s > 0"}
    assert [json.loads(l)["t"] for l in out.read_text().splitlines()] == kept_positions(6)


def test_real_embed_then_prune_csv_round_trip(tmp_path):
    """End to end with the packaged text model: a CSV with BOM, CRLF, a quoted newline and a blank line."""
    text = ("\ufefftext,year\r\n\"Shares fell\r\nsharply.\",2021\r\nA late goal won it.,\r\n\r\n"
            "The new phone is fast.,2022\r\nVoters head to the polls.,\r\nThe film won awards.,2023\r\n")
    src = tmp_path / "news.csv"
    src.write_bytes(text.encode())
    emb = tmp_path / "emb.parquet"
    r = run("embed", src, "-o", emb, "--text-column", "text", "--keep-column", "year")
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "kept.csv"
    r = run("prune", emb, "--keep", "year != null", "--source", src, "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    header, *records = csv_records(text.lstrip("\ufeff"))
    assert csv_records(out.read_bytes().decode("utf-8-sig")) == [header] + [rec for rec in records if rec[1] != ""]
    assert json.loads(r.stdout)["removed_by"] == {"year != null": 2}


def test_scored_rows_in_source_order_or_not_give_the_same_records(tmp_path, monkeypatch):
    """Embed's own order is matched batch by batch (here 17 scored rows a batch against the source's
    4096), any other order or a subset by id as a set: the records written are the same."""
    import curate.prune.columns

    monkeypatch.setattr(curate.prune.columns, "BATCH_ROWS", 17)
    d = tmp_path / "data"
    d.mkdir()
    for name, lo in (("a.jsonl", 0), ("b.jsonl", 40)):
        (d / name).write_text("".join(json.dumps({"t": i}) + "\n" for i in range(lo, lo + 40)))
    ids = [f"{f}:{i}" for f in ("a.jsonl", "b.jsonl") for i in range(40)]
    in_order = scored_for(d, ids, tmp_path / "s.parquet")
    shuffled = scored_for(d, ids[::-1], tmp_path / "r.parquet")  # s cycles +1, 0, -1 in the reversed order

    def expect(kept: set[str]) -> dict[str, str]:
        return {f: "".join(json.dumps({"t": lo + i}) + "\n" for i in range(40) if f"{f}:{i}" in kept)
                for f, lo in (("a.jsonl", 0), ("b.jsonl", 40))}

    def written(out: Path) -> dict[str, str]:
        return {f: (out / f).read_text() for f in ("a.jsonl", "b.jsonl")}

    for scored, order, out in ((in_order, ids, tmp_path / "o1"), (shuffled, ids[::-1], tmp_path / "o2")):
        r = run("prune", scored, "--keep", "s > 0", "--source", d, "-o", out)
        assert r.exit_code == 0, r.stderr
        assert written(out) == expect({order[i] for i in kept_positions(80)})
    # A subset in order (the scored output of a prune, pruned again): the rest of the source is not kept.
    sub = tmp_path / "sub.parquet"
    assert run("prune", in_order, "--keep", "s >= 0", "-o", sub).exit_code == 0
    r = run("prune", sub, "--keep", "s > 0", "--source", d, "-o", tmp_path / "o3")
    assert r.exit_code == 0, r.stderr
    assert written(tmp_path / "o3") == expect({ids[i] for i in kept_positions(80)})
