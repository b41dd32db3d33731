"""Nothing from the input reaches the page unescaped; --source is used or refused; outputs are
committed together and --overwrite replaces only what curate wrote."""

from __future__ import annotations

import html
import json

import numpy as np
import pyarrow as pa

from conftest import assert_fails, run, snapshot
from report_helpers import XSS, scored_with_nulls


def _markup_file(tmp_path):
    n = 60
    labels = [XSS[i % 3] for i in range(n)]
    ids = [f"{XSS[i % 3]}{i}" for i in range(n)]
    extra = {XSS[0]: pa.array(np.random.default_rng(1).random(n)),
             "text": pa.array([f"{XSS[i % 3]} body {i}" for i in range(n)])}
    return scored_with_nulls(tmp_path / "x.parquet", n=n, extra=extra, ids=ids, labels=labels)


def test_markup_in_column_names_ids_labels_and_texts_is_escaped(tmp_path):
    scored = _markup_file(tmp_path)
    r = run("report", scored, "-o", tmp_path / "r.html", "--examples", "10")
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "r.html").read_text()
    for bad in XSS:
        assert bad not in page
        assert html.escape(bad, quote=True) in page  # it is shown, escaped
    assert "<script" not in page and "onerror=" not in page.replace("onerror=alert", "")
    assert "<svg" not in page and page.count("<img") == page.count('<img class="')


def test_source_table_supplies_snippets_and_is_escaped(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet", n=60)
    src = tmp_path / "src.csv"
    src.write_text("id,body\n" + "".join(f'r{i:04d},"{XSS[1].replace(chr(34), 2 * chr(34))} source text {i}"\n' for i in range(60)))
    r = run("report", scored, "-o", tmp_path / "r.html", "--source", src)
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "r.html").read_text()
    assert "source text" in page and XSS[1] not in page and html.escape(XSS[1]) in page


def test_source_image_folder_gives_thumbnails(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    ids = []
    for i in range(30):
        p = root / "ab"[i % 2] / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (i * 8, 10, 200)).save(p)
        ids.append(p.relative_to(root).as_posix())
    scored = scored_with_nulls(tmp_path / "s.parquet", n=30, ids=ids)
    r = run("report", scored, "-o", tmp_path / "r.html", "--source", root)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "r.html").read_text().count('<img class="thumb"') >= 5


def test_overwrite_replaces_only_the_report(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet", n=60)
    out = tmp_path / "r.html"
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "r_files").mkdir()  # an empty folder holds nothing to lose: --overwrite may use it
    assert_fails(["report", scored, "-o", out], "r_files", "--overwrite", root=tmp_path)
    assert run("report", scored, "-o", out, "--overwrite").exit_code == 0
    first = snapshot(tmp_path / "r_files")
    assert_fails(["report", scored, "-o", out], "--overwrite", root=tmp_path)
    r = run("report", scored, "-o", out, "--overwrite", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == 60
    assert snapshot(tmp_path / "r_files") == first  # deterministic
    assert (tmp_path / "notes.txt").read_text() == "mine"
    # No temporaries, locks or journals left; only the records saying curate wrote the two outputs.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".r.html.curate", ".r_files.curate"]


def test_output_is_the_same_bytes_for_the_same_seed(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet", n=300)
    for name in ("a", "b"):
        assert run("report", scored, "-o", tmp_path / f"{name}.html", "--map-sample", "100", "--seed", "4").exit_code == 0
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert snapshot(tmp_path / "a_files") == snapshot(tmp_path / "b_files")


def test_thumbnails_never_come_from_outside_the_source_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8), (0, 0, 255)).save(root / "a" / "in.png")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "secret.png")
    ids = ["a/in.png", "../secret.png", str(tmp_path / "secret.png")] + [f"a/{i}.png" for i in range(20)]
    scored = scored_with_nulls(tmp_path / "s.parquet", n=len(ids), ids=ids)
    r = run("report", scored, "-o", tmp_path / "r.html", "--source", root, "--examples", "30")
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "r.html").read_text()
    assert page.count('<img class="thumb" src="data:image/png;base64,') == page.count('alt="a/in.png"') >= 1
