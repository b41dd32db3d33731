"""The report's numbers against polars/scipy/numpy on a scored file with nulls and NaN."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest
from scipy import stats

from conftest import run
from curate.report import data
from report_helpers import scored_with_nulls


def _finite(df: pl.DataFrame, col: str) -> np.ndarray:
    x = np.array([np.nan if v is None else float(v) for v in df[col].to_list()])
    return x[np.isfinite(x)]


def test_quantiles_in_summary_equal_numpy_on_finite_values(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet")
    r = run("report", scored, "-o", tmp_path / "r.html", "--json")
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)["quantiles"]
    df = pl.read_parquet(scored)
    assert set(got) == {"el2n", "grand", "rho", "il_loss", "gio_order", "dup_sim"}
    for col, qs in got.items():
        x = _finite(df, col)
        for q in (0.1, 0.5, 0.9):
            assert qs[f"q{q:g}"] == pytest.approx(np.quantile(x, q), rel=1e-12, abs=1e-12), col


def test_per_class_rows_count_finite_values_only(tmp_path):
    df = pl.read_parquet(scored_with_nulls(tmp_path / "s.parquet"))
    for col in ("gio_order", "el2n", "grand"):
        got = data.per_class(df, col)
        for r in got.iter_rows(named=True):
            x = _finite(df.filter(pl.col("label") == r["label"]), col)
            assert r["n"] == len(x)
            assert r["mean"] == pytest.approx(x.mean(), rel=1e-12)
            assert r["median"] == pytest.approx(np.median(x), rel=1e-12)
            assert (r["min"], r["max"]) == (pytest.approx(x.min()), pytest.approx(x.max()))
    picked = data.per_class(df, "gio_order")
    sizes = df.group_by("label").len()
    # n of gio_order is the number picked in the class, not the class size.
    expect = df.filter(pl.col("gio_selected")).group_by("label").len().sort("label")["len"].to_list()
    assert picked["n"].to_list() == expect
    assert picked["n"].sum() < sizes["len"].sum()


def test_page_shows_picked_count_as_gio_order_n(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet")
    assert run("report", scored, "-o", tmp_path / "r.html").exit_code == 0
    page = (tmp_path / "r.html").read_text()
    section = re.search(r'<section id="gio_order">(.*?)</section>', page, re.S).group(1)
    rows = re.findall(r'<tr><td class="l">(\w)</td><td>([\d,]+)</td>', section)
    df = pl.read_parquet(scored)
    expect = {k: v for k, v in df.filter(pl.col("gio_selected")).group_by("label").len().iter_rows()}
    assert {k: int(v.replace(",", "")) for k, v in rows} == expect


def test_spearman_uses_only_pairs_where_both_are_set(tmp_path):
    df = pl.read_parquet(scored_with_nulls(tmp_path / "s.parquet"))
    cols = ["el2n", "rho", "grand", "gio_order"]
    got = data.spearman(df, cols)
    for i, a in enumerate(cols):
        for j, b in enumerate(cols):
            x = np.array([np.nan if v is None else float(v) for v in df[a].to_list()])
            y = np.array([np.nan if v is None else float(v) for v in df[b].to_list()])
            ok = np.isfinite(x) & np.isfinite(y)
            expect = 1.0 if i == j else stats.spearmanr(x[ok], y[ok]).statistic
            assert got[i, j] == pytest.approx(expect, abs=1e-12), (a, b)


def test_spearman_ranks_after_dropping_nulls_not_before():
    # Ranking each column over all its rows and then dropping the null pair gives 0.686 here;
    # Spearman of the five complete pairs is 0.6.
    df = pl.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": [2.0, 1.0, None, 6.0, 3.0, 5.0]})
    got = data.spearman(df, ["a", "b"])[0, 1]
    assert got == pytest.approx(stats.spearmanr([1, 2, 4, 5, 6], [2, 1, 6, 3, 5]).statistic, abs=1e-12)
    assert got == pytest.approx(0.6, abs=1e-12)


def test_gio_picks_and_curve_match_a_plain_count(tmp_path):
    df = pl.read_parquet(scored_with_nulls(tmp_path / "s.parquet"))
    picks = data.gio_picks(df)
    for r in picks.iter_rows(named=True):
        sel = df.filter(pl.col("label") == r["label"])["gio_selected"].to_list()
        assert (r["picked"], r["size"]) == (sum(sel), len(sel))
    curve = data.gio_curve(df)
    order = df.filter(pl.col("gio_order").is_not_null()).sort("gio_order")["label"].to_list()
    seen: dict[str, int] = {}
    expect = []
    for lab in order:
        seen[lab] = seen.get(lab, 0) + 1
        expect.append(seen[lab])
    assert curve["cum"].to_list() == expect and curve["step"].to_list() == list(range(1, len(order) + 1))


def test_dup_group_sizes_match_a_plain_count(tmp_path):
    df = pl.read_parquet(scored_with_nulls(tmp_path / "s.parquet", n=100))
    got = {r["size"]: r["groups"] for r in data.dup_groups(df).iter_rows(named=True)}
    from collections import Counter
    sizes = Counter(Counter(df["dup_group"].to_list()).values())
    assert got == {s: g for s, g in sizes.items() if s > 1}


def test_map_sample_is_seeded_bounded_and_holds_flagged_rows(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet", n=400)
    rows = data.sample_rows(400, 150, seed=3, must=[5, 399])
    assert len(rows) <= 152 and {5, 399} <= set(rows.tolist())
    assert np.array_equal(rows, data.sample_rows(400, 150, seed=3, must=[5, 399]))
    emb = data.sample_embeddings(scored, rows, batch_rows=64)  # several batches
    full = np.stack(pl.read_parquet(scored)["embedding"].to_list()).astype(np.float32)
    assert np.array_equal(emb, full[rows])


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(300, 8)) * np.arange(1, 9)
    got = data.pca2(x)
    ref = PCA(n_components=2, svd_solver="full").fit_transform(x)
    for k in range(2):
        assert abs(np.corrcoef(got[:, k], ref[:, k])[0, 1]) == pytest.approx(1.0, abs=1e-9)


def test_scores_are_read_without_embeddings_or_text(tmp_path):
    df, cols, text = data.read_scores(scored_with_nulls(tmp_path / "s.parquet", n=30))
    assert "embedding" not in df.columns and "text" not in df.columns and text == "text"
    assert cols == ["el2n", "grand", "rho", "il_loss", "gio_order", "dup_sim"]


def test_flagged_examples_listed_under_the_map_are_the_extremes(tmp_path):
    scored = scored_with_nulls(tmp_path / "s.parquet", n=200)
    assert run("report", scored, "-o", tmp_path / "r.html", "--examples", "4").exit_code == 0
    page = (tmp_path / "r.html").read_text()
    section = re.search(r'<section id="map">(.*?)</section>', page, re.S).group(1)
    listed = re.findall(r"<h4>(highest el2n|lowest rho)</h4><ul class='ex'>(.*?)</ul>", section)
    df = pl.read_parquet(scored)
    expect = {"highest el2n": df.drop_nulls("el2n").sort("el2n", descending=True)["id"][:4].to_list(),
              "lowest rho": df.drop_nulls("rho").sort("rho")["id"][:4].to_list()}
    assert {name: re.findall(r"<code>(.*?)</code>", items) for name, items in listed} == expect


def test_axis_mode_for_skewed_and_plain_scores():
    from curate.report.plots import axis_mode

    rng = np.random.default_rng(0)
    assert axis_mode(rng.lognormal(0, 2.5, 2000)) == "log"  # il_loss-like: positive, long right tail
    assert axis_mode(np.concatenate([rng.normal(size=2000), [-400.0, 900.0]])) == "clip"  # rho with two extremes
    assert axis_mode(rng.random(2000)) == "linear"
