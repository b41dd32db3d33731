"""`curate report`: a self-contained page with the plots, opened in real headless Chromium."""

from __future__ import annotations

import base64
import html
import json
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import run
from curate.io.provenance import file_sha256
from report_helpers import scored_with_nulls
from test_prune import scored_file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _inline_pngs(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_holds_every_score_inline(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    out = tmp_path / "report.html"
    r = run("report", scored, "-o", out)
    assert r.exit_code == 0, r.stderr
    page = out.read_text()
    for col in ("el2n", "rho", "grand", "gio_order", "gio_selected", "map", "correlation"):
        assert f'<section id="{col}">' in page
    files = sorted(p.name for p in (tmp_path / "report_files").iterdir())
    assert files == sorted(["map.png", "spearman.png", "gio_order.png"] + [f"hist_{i}.png" for i in range(4)])
    prov = json.loads(html.unescape(re.search(r'<meta name="curate" content="([^"]*)">', page).group(1)))
    assert prov["step"] == "report" and prov["input"]["sha256"] == file_sha256(scored)
    assert "src=\"http" not in page and "src='http" not in page  # self-contained
    imgs = _inline_pngs(page)
    assert len(imgs) == 7 and all(im.size[0] > 300 for im in imgs)
    # Histograms span the page: drawn 1100 px wide and shown at width 100 %.
    assert Image.open(tmp_path / "report_files" / "hist_0.png").size[0] == 1100 and "img.plot{width:100%" in page


def test_report_without_labels_or_embeddings(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "el2n": [0.1, None, 0.3, 0.2]}), tmp_path / "s.parquet")
    r = run("report", tmp_path / "s.parquet", "-o", tmp_path / "r.html", "--json")
    assert r.exit_code == 0, r.stderr
    assert '"map_rows": 0' in r.stdout and '<section id="map">' not in (tmp_path / "r.html").read_text()


def test_duplicates_are_shown_side_by_side(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet", n=60)
    assert run("report", scored, "-o", tmp_path / "r.html").exit_code == 0
    page = (tmp_path / "r.html").read_text()
    section = re.search(r'<section id="duplicates">(.*?)</section>', page, re.S).group(1)
    # The helper makes row i (i % 7 == 0, i % 3 != 0) duplicate row 3 * (i // 3): r0007 -> r0006.
    assert "<code>r0007</code> text of row 7</td><td><code>r0006</code> text of row 6</td>" in section
    assert "groups" in section and "0.9700" in section


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it where it can)")
def test_report_renders_in_headless_chromium(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet", n=400)
    out = tmp_path / "report.html"
    assert run("report", scored, "-o", out).exit_code == 0
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,3000",
                    out.as_uri()], check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert img.shape[:2] == (3000, 1200)
    assert (img.sum(axis=2) < 150).mean() > 0.002  # text
    # The map (viridis yellow-green points, red rings) and the histograms' blue bars are on screen:
    # an <img> that failed to load shows none of these colours.
    blue = (img[..., 2] - img[..., 0] > 60).mean()
    red = (img[..., 0] - img[..., 2] > 60).mean()
    green = ((img[..., 1] - img[..., 2] > 40) & (img[..., 1] > 150)).mean()
    assert blue > 0.01 and red > 0.001 and green > 0.0005
