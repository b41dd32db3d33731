"""`curate prune`: kept rows equal independent polars selections; verbatim source output; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import polars.testing  # noqa: F401
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_fails, run
from curate.io.parquet import embedding_column, read_provenance, write_table

def scored_file(path: Path, n: int = 200, id_rule: str = "column id", ids=None, root: str = "", source=None) -> Path:
    """A scored file; with ``source`` its provenance records that input's fingerprint as `curate embed` does."""
    rng = np.random.default_rng(0)
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    order = np.where(rng.random(n) < 0.2, np.arange(n), -1).astype(np.int32)
    table = pa.table({
        "id": pa.array(ids or [f"r{i:04d}" for i in range(n)]),
        "label": pa.array(labels.tolist()),
        "embedding": embedding_column(rng.normal(size=(n, 4)).astype(np.float32)),
        "el2n": pa.array(rng.random(n) * 1.4),
        "rho": pa.array(rng.normal(size=n)),
        "grand": pa.array(np.where(rng.random(n) < 0.05, np.nan, rng.random(n) * 3)).cast(pa.float64()),
        "gio_selected": pa.array(order >= 0),
        "gio_order": pa.array(order, pa.int32(), mask=order < 0),
    })
    prov = {"step": "score", "source": {"id_rule": id_rule, "root": root}}
    if source is not None:
        from curate.io.sources import open_source

        src = open_source(source)
        prov["inputs"] = src.fingerprint()
        prov["source"]["root"] = str(src.root)
    write_table(table, path, prov)
    return path


def kept_ids(path: Path) -> list[str]:
    return pq.read_table(path).column("id").to_pylist()


def test_global_quantile_window_equals_polars(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    out = tmp_path / "o.parquet"
    r = run("prune", scored, "--keep", "el2n in [q0.1, q0.9]", "--keep", "rho > -0.5", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    df = pl.read_parquet(scored)
    lo, hi = df["el2n"].quantile(0.1, "linear"), df["el2n"].quantile(0.9, "linear")
    expect = df.filter(pl.col("el2n").is_between(lo, hi) & (pl.col("rho") > -0.5))["id"].to_list()
    assert kept_ids(out) == expect
    s = json.loads(r.stdout)
    assert s["rows_in"] == 200 and s["rows_kept"] == len(expect)
    assert s["resolved_bounds"]["el2n in [q0.1, q0.9]"] == {"q0.1": lo, "q0.9": hi}
    assert sum(v["kept"] for v in s["per_class"].values()) == len(expect)
    assert read_provenance(out)["prune"]["rows_kept"] == len(expect)


def test_per_class_quantile_window_equals_polars(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    out = tmp_path / "o.parquet"
    r = run("prune", scored, "--keep", "el2n in [q0.25, q0.75]", "--per-class", "-o", out)
    assert r.exit_code == 0, r.stderr
    df = pl.read_parquet(scored)
    expect = df.filter(
        pl.col("el2n").is_between(pl.col("el2n").quantile(0.25, "linear").over("label"),
                                  pl.col("el2n").quantile(0.75, "linear").over("label")))["id"].to_list()
    assert kept_ids(out) == expect


def test_nulls_never_pass_unless_keep_null(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    df = pl.read_parquet(scored)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run("prune", scored, "--keep", "gio_order >= 0", "-o", a).exit_code == 0
    assert kept_ids(a) == df.filter(pl.col("gio_order").is_not_null())["id"].to_list()
    assert run("prune", scored, "--keep", "gio_order < 5", "--keep-null", "-o", b).exit_code == 0
    assert kept_ids(b) == df.filter(pl.col("gio_order").is_null() | (pl.col("gio_order") < 5))["id"].to_list()
    c = tmp_path / "c.parquet"
    assert run("prune", scored, "--keep", "gio_selected == true", "-o", c).exit_code == 0
    assert kept_ids(c) == kept_ids(a)


def test_top_fraction_balanced_and_random_budgets(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    df = pl.read_parquet(scored)
    top = tmp_path / "top.parquet"
    assert run("prune", scored, "--top", 30, "--by", "rho", "-o", top).exit_code == 0
    assert set(kept_ids(top)) == set(df.sort("rho", descending=True).head(30)["id"].to_list())
    low = tmp_path / "low.parquet"
    assert run("prune", scored, "--fraction", 0.25, "--by", "el2n", "--ascending", "--balanced", "-o", low).exit_code == 0
    kept = pl.read_parquet(low)
    assert kept.height == 50
    for lab, grp in df.group_by("label"):
        mine = kept.filter(pl.col("label") == lab[0])
        assert abs(mine.height - 0.25 * grp.height) <= 1
        assert mine["el2n"].max() <= grp.sort("el2n")["el2n"][mine.height - 1]
    rnd = tmp_path / "rnd.parquet"
    r = run("prune", scored, "--top", 30, "--by", "rho", "--random", "--seed", 3, "-o", rnd, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["rows_kept"] == 30
    assert len(set(kept_ids(rnd))) == 30 and set(kept_ids(rnd)) != set(kept_ids(top))
    rnd2 = tmp_path / "rnd2.parquet"
    run("prune", scored, "--top", 30, "--by", "rho", "--random", "--seed", 3, "-o", rnd2)
    assert kept_ids(rnd2) == kept_ids(rnd)


def test_negative_bounds_and_scientific_notation(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    out = tmp_path / "o.parquet"
    assert run("prune", scored, "--keep", "rho in [-1.5, -2e-1]", "-o", out).exit_code == 0
    df = pl.read_parquet(scored)
    assert kept_ids(out) == df.filter(pl.col("rho").is_between(-1.5, -0.2))["id"].to_list()


def test_dropped_file_names_the_condition(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    out, dropped = tmp_path / "o.parquet", tmp_path / "dropped.csv"
    assert run("prune", scored, "--keep", "rho > 0", "--keep", "el2n < 0.7", "-o", out, "--dropped", dropped).exit_code == 0
    d = pl.read_csv(dropped)
    df = pl.read_parquet(scored)
    assert set(d["id"]) | set(kept_ids(out)) == set(df["id"]) and not set(d["id"]) & set(kept_ids(out))
    first = d.join(df, on="id")
    assert (first.filter(pl.col("removed_by") == "rho > 0")["rho"] <= 0).all()
    assert (first.filter(pl.col("removed_by") == "el2n < 0.7")["rho"] > 0).all()


def test_source_jsonl_and_csv_written_back_verbatim(tmp_path):
    lines = [json.dumps({"id": f"r{i:04d}", "text": f"ünïcode text {i}", "x": i}, ensure_ascii=False) + "\n" for i in range(200)]
    src = tmp_path / "train.jsonl"
    src.write_text("".join(lines), encoding="utf-8")
    scored = scored_file(tmp_path / "s.parquet", source=src)
    out = tmp_path / "kept.jsonl"
    assert run("prune", scored, "--keep", "rho > 0", "--source", src, "-o", out).exit_code == 0
    keep = set(pl.read_parquet(scored).filter(pl.col("rho") > 0)["id"])
    assert out.read_bytes() == "".join(l for l in lines if json.loads(l)["id"] in keep).encode()

    # CSV with derived ids (<file>:<row>) and a quoted field spanning lines.
    rows = ['id_unused,text\n'] + [f'u{i},"line one\nline, two {i}"\n' if i % 7 == 0 else f"u{i},plain {i}\n" for i in range(200)]
    csv_src = tmp_path / "train.csv"
    csv_src.write_text("".join(rows))
    scored2 = scored_file(tmp_path / "s2.parquet", id_rule="<relative file>:<row>", ids=[f"train.csv:{i}" for i in range(200)],
                          source=csv_src)
    out2 = tmp_path / "kept.csv"
    r = run("prune", scored2, "--keep", "rho > 0", "--source", csv_src, "-o", out2)
    assert r.exit_code == 0, r.stderr
    keep_rows = [i for i, v in enumerate(pl.read_parquet(scored2)["rho"]) if v > 0]
    assert out2.read_text() == rows[0] + "".join(rows[i + 1] for i in keep_rows)


def test_source_parquet_and_image_folder(tmp_path):
    src = tmp_path / "train.parquet"
    pq.write_table(pa.table({"id": [f"r{i:04d}" for i in range(200)], "v": list(range(200))}), src)
    scored = scored_file(tmp_path / "s.parquet", source=src)
    out = tmp_path / "kept.parquet"
    assert run("prune", scored, "--keep", "el2n > 0.7", "--source", src, "-o", out).exit_code == 0
    keep = pl.read_parquet(scored).filter(pl.col("el2n") > 0.7)["id"].to_list()
    t = pq.read_table(out)
    assert t.column("id").to_pylist() == keep and t.schema.names == ["id", "v"]

    images = tmp_path / "imgs"
    ids = []
    for i in range(200):
        p = images / f"c{i % 3}" / f"{i:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"png {i}".encode())
        ids.append(p.relative_to(images).as_posix())
    scored_img = scored_file(tmp_path / "si.parquet", id_rule="relative path", ids=ids, source=images)
    for flag, name in (([], "links"), (["--copy"], "copies")):
        out_dir = tmp_path / name
        r = run("prune", scored_img, "--keep", "rho > 0", "--source", images, "-o", out_dir, *flag)
        assert r.exit_code == 0, r.stderr
        keep = set(pl.read_parquet(scored_img).filter(pl.col("rho") > 0)["id"])
        got = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.png")}
        assert got == keep
        sample = out_dir / sorted(keep)[0]
        assert sample.is_symlink() == (name == "links")
        assert sample.read_bytes() == (images / sorted(keep)[0]).read_bytes()


def _fails(args, out, *fragments):
    assert_fails(args, *fragments, out=out, root=Path(out).parent)


@pytest.mark.parametrize("expr,fragment", [
    ("el2n >> 3", "not a condition"),
    ("el2n in [q0.1 q0.9]", "not a condition"),
    ("el2n > high", "neither a number nor a quantile"),
    ("el2n in [q0.2, q1.5]", "outside [0, 1]"),
    ("el2n > q-0.1", "outside [0, 1]"),
    ("nonesuch > 1", "no column 'nonesuch'"),
    ("label > 1", "not a score"),
    ("el2n in [3, 1]", "interval is empty"),
])
def test_bad_conditions(tmp_path, expr, fragment):
    scored = scored_file(tmp_path / "s.parquet")
    out = tmp_path / "o.parquet"
    _fails(["prune", scored, "--keep", expr, "-o", out], out, fragment)


def test_bad_source_and_existing_output(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": f"z{i}"}) + "\n" for i in range(10)))
    out = tmp_path / "o.jsonl"
    _fails(["prune", scored, "--keep", "rho > 0", "--source", other, "-o", out], out, "records no embedded input")
    scored = scored_file(tmp_path / "s2.parquet", source=other)
    _fails(["prune", scored, "--keep", "rho > 0", "--source", other, "-o", out], out, "are not in it")
    _fails(["prune", scored, "--keep", "rho > 0", "--source", other, "-o", tmp_path / "o.csv"], tmp_path / "o.csv", "must end in .jsonl")
    _fails(["prune", scored, "-o", tmp_path / "x.parquet"], tmp_path / "x.parquet", "nothing to do")
    existing = tmp_path / "e.parquet"
    existing.write_bytes(b"x")
    r = run("prune", scored, "--keep", "rho > 0", "-o", existing)
    assert r.exit_code == 2 and "--overwrite" in r.stderr and existing.read_bytes() == b"x"


def test_nulls_nan_and_null_conditions(tmp_path):
    n = 60
    el2n = [None if i % 10 == 0 else float("nan") if i % 10 == 1 else i / n for i in range(n)]
    dup_of = [None if i % 3 else f"r{i - 1:04d}" for i in range(n)]
    table = pa.table({"id": [f"r{i:04d}" for i in range(n)], "label": ["a", "b"] * (n // 2),
                      "el2n": pa.array(el2n, pa.float64()), "dup_of": pa.array(dup_of, pa.string()),
                      "flag": [i % 4 == 0 for i in range(n)]})
    scored = tmp_path / "s.parquet"
    write_table(table, scored, {"step": "score"})
    values = np.array([v for v in el2n if v is not None and v == v])  # independent: numpy on the clean values
    lo, hi = np.quantile(values, 0.2), np.quantile(values, 0.8)

    out = tmp_path / "q.parquet"
    r = run("prune", scored, "--keep", "el2n in [q0.2, q0.8]", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["resolved_bounds"]["el2n in [q0.2, q0.8]"] == {"q0.2": pytest.approx(lo), "q0.8": pytest.approx(hi)}
    assert s["quantile_ignored"] == {"el2n": {"null": 6, "nan": 6}}
    assert kept_ids(out) == [f"r{i:04d}" for i, v in enumerate(el2n) if v is not None and v == v and lo <= v <= hi]

    out = tmp_path / "ne.parquet"
    assert run("prune", scored, "--keep", "el2n != 0.5", "-o", out).exit_code == 0
    assert kept_ids(out) == [f"r{i:04d}" for i, v in enumerate(el2n) if v is not None and v == v and v != 0.5]  # NaN never passes

    out = tmp_path / "dup.parquet"
    r = run("prune", scored, "--keep", "dup_of == null", "--keep", "flag == true", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    expect = [f"r{i:04d}" for i in range(n) if dup_of[i] is None and i % 4 == 0]
    assert kept_ids(out) == expect
    removed = json.loads(r.stdout)["removed_by"]
    assert removed == {"dup_of == null": sum(d is not None for d in dup_of),
                       "flag == true": sum(d is None and i % 4 != 0 for i, d in enumerate(dup_of))}

    out = tmp_path / "nn.parquet"
    assert run("prune", scored, "--keep", "dup_of != null", "-o", out).exit_code == 0
    assert kept_ids(out) == [f"r{i:04d}" for i in range(n) if dup_of[i] is not None]

    out = tmp_path / "empty.parquet"
    r = run("prune", scored, "--keep", "el2n > 5", "-o", out, "--allow-empty", "--json")
    assert r.exit_code == 0, r.stderr
    assert pq.read_table(out).num_rows == 0 and pq.read_table(out).schema.names == table.schema.names


def test_kept_rows_streamed_in_batches_equal_one_filter(tmp_path):
    from curate.prune.select import _write_kept

    scored = scored_file(tmp_path / "s.parquet", n=100)
    mask = np.arange(100) % 3 != 0
    out = tmp_path / "o.parquet"
    _write_kept(scored, mask, {"step": "prune"}, out, batch_rows=7)
    expect = pq.read_table(scored).filter(pa.array(mask))
    got = pq.read_table(out)
    assert got.num_rows == 66 and pq.ParquetFile(out).metadata.num_row_groups > 1
    pl.testing.assert_frame_equal(pl.from_arrow(got), pl.from_arrow(expect))  # NaN-aware comparison
    assert read_provenance(out) == {"step": "prune"}
