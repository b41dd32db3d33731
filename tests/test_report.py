"""`curate report`: a self-contained page with the plots, opened in real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from curate.cli import app
from curate.report import spearman
from test_prune import scored_file

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_holds_every_score_inline(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["report", str(scored), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    page = out.read_text()
    for col in ("el2n", "rho", "grand", "gio_order"):
        assert f"<section id='{col}'>" in page
        assert (tmp_path / "report_files" / f"hist_{col}.png").exists()
    assert (tmp_path / "report_files" / "spearman.png").exists()
    assert "src=\"http" not in page and "src='http" not in page  # self-contained
    assert len(re.findall(r"data:image/png;base64,", page)) >= 5
    r = runner.invoke(app, ["report", str(scored), "-o", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.stderr


def test_spearman_equals_rank_correlation():
    import polars as pl

    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    df = pl.DataFrame({"a": a, "b": a ** 3 + 0.1 * rng.normal(size=50), "c": -a})
    corr = spearman(df, ["a", "b", "c"])
    ra, rb = np.argsort(np.argsort(df["a"].to_numpy())), np.argsort(np.argsort(df["b"].to_numpy()))
    assert corr[0, 1] == pytest.approx(np.corrcoef(ra, rb)[0, 1], abs=1e-12)
    assert corr[0, 2] == pytest.approx(-1.0)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it where it can)")
def test_report_renders_in_headless_chromium(tmp_path):
    scored = scored_file(tmp_path / "s.parquet")
    out = tmp_path / "report.html"
    assert runner.invoke(app, ["report", str(scored), "-o", str(out)]).exit_code == 0
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1000,1400",
                    out.as_uri()], check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert img.shape[:2] == (1400, 1000)
    # A rendered page, not a blank one: dark text, and the plots' blue bars and red correlation cells.
    assert (img.sum(axis=2) < 150).mean() > 0.002
    blue = (img[..., 2] - img[..., 0] > 60).mean()
    red = (img[..., 0] - img[..., 2] > 60).mean()
    assert blue > 0.005 and red > 0.005
