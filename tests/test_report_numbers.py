"""The report's numbers against polars/scipy/numpy on a scored file with nulls and NaN."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from conftest import run
from curate.report import data
from curate.report import stats as rstats
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


def _per_class(scored, col: str) -> list[list]:
    sf = data.open_scores(scored)
    labels = data.read_labels(sf)
    return rstats.per_class(rstats.read_column(sf, col, labels, 0), labels)


def test_per_class_rows_count_finite_values_only(tmp_path):
    # Labels with nulls: rows without a label are a class of their own, "(none)", shown last.
    lab = [None if i % 9 == 0 else "ba"[i % 2] for i in range(240)]
    scored = scored_with_nulls(tmp_path / "s.parquet", labels=lab)
    df = pl.read_parquet(scored)
    for col in ("gio_order", "el2n", "grand"):
        got = _per_class(scored, col)
        assert [r[0] for r in got] == ["a", "b", None]
        for r in got:
            x = _finite(df.filter(pl.col("label").eq_missing(r[0])), col)
            assert r[1] == len(x) > 0
            assert r[2] == pytest.approx(x.mean(), rel=1e-12)
            assert r[3] == pytest.approx(np.median(x), rel=1e-12)
            assert (r[4], r[5]) == (pytest.approx(x.min()), pytest.approx(x.max()))
    picked = _per_class(scored, "gio_order")
    # n of gio_order is the number picked in the class, not the class size.
    expect = [int(np.sum(df["gio_selected"].to_numpy() & (df["label"].eq_missing(c)).to_numpy())) for c in ("a", "b", None)]
    assert [r[1] for r in picked] == expect
    assert sum(expect) < df.height


def test_a_class_without_finite_values_keeps_an_empty_row(tmp_path):
    n = 60
    rho = pa.array([float("nan") if i % 3 == 0 else float(i) for i in range(n)])
    scored = scored_with_nulls(tmp_path / "s.parquet", n=n, labels=["xyz"[i % 3] for i in range(n)], extra={"rho": rho})
    got = _per_class(scored, "rho")
    assert got[0] == ["x", 0, None, None, None, None]
    assert got[1] == ["y", 20, np.mean(np.arange(1, n, 3)), 29.5, 1.0, 58.0]


def test_quantiles_equal_polars_to_the_bit():
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 10, 101, 1000):
        for x in (rng.normal(size=n), np.round(rng.normal(size=n) * 2) / 2, rng.lognormal(0, 3, n)):
            got = rstats.quantiles(x, (0.0, 0.1, 0.25, 0.5, 0.9, 1.0))
            for q, v in got.items():
                assert v == pl.Series(x).quantile(q, "linear"), (n, q)


def test_shown_rows_are_the_extremes_in_row_order_among_ties():
    rng = np.random.default_rng(2)
    keys = np.round(rng.random(5000) * 20)  # ~250 rows share each value
    rows = np.arange(5000)
    for desc in (False, True):
        for n in (1, 7, 300):
            sel = rstats.Smallest(n, rows_descending=desc)
            for i in range(0, 5000, 333):  # batches of uneven size
                sel.push(keys[i:i + 333], rows[i:i + 333])
            expect = sorted(zip(keys.tolist(), (-rows if desc else rows).tolist()))[:n]
            assert list(zip(sel.keys.tolist(), (-sel.rows if desc else sel.rows).tolist())) == expect


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
    scored = scored_with_nulls(tmp_path / "s.parquet", extra={"grand": pa.array(np.round(np.arange(240) % 17 / 4.0))})
    df = pl.read_parquet(scored)
    cols = ["el2n", "rho", "grand", "gio_order"]  # grand: many ties
    got = rstats.spearman(data.open_scores(scored), cols)
    for i, a in enumerate(cols):
        for j, b in enumerate(cols):
            x = np.array([np.nan if v is None else float(v) for v in df[a].to_list()])
            y = np.array([np.nan if v is None else float(v) for v in df[b].to_list()])
            ok = np.isfinite(x) & np.isfinite(y)
            expect = 1.0 if i == j else stats.spearmanr(x[ok], y[ok]).statistic
            assert got[i, j] == pytest.approx(expect, abs=1e-12), (a, b)


def test_spearman_ranks_after_dropping_nulls_not_before(tmp_path):
    # Ranking each column over all its rows and then dropping the null pair gives 0.686 here;
    # Spearman of the five complete pairs is 0.6.
    table = pa.table({"id": list("uvwxyz"), "a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": [2.0, 1.0, None, 6.0, 3.0, 5.0]})
    pq.write_table(table, tmp_path / "s.parquet")
    scored = data.open_scores(tmp_path / "s.parquet")
    got = rstats.spearman(scored, ["a", "b"])[0, 1]
    assert got == pytest.approx(stats.spearmanr([1, 2, 4, 5, 6], [2, 1, 6, 3, 5]).statistic, abs=1e-12)
    assert got == pytest.approx(0.6, abs=1e-12)


def test_spearman_is_undefined_for_a_constant_column_or_two_rows(tmp_path):
    table = pa.table({"id": list("uvwxyz"), "a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "c": [2.0] * 6,
                      "d": [None, 1.0, None, None, 3.0, None]})
    pq.write_table(table, tmp_path / "s.parquet")
    got = rstats.spearman(data.open_scores(tmp_path / "s.parquet"), ["a", "c", "d"])
    assert np.isnan(got[0, 1]) and np.isnan(got[0, 2]) and np.isnan(got[1, 2]) and (np.diag(got) == 1).all()


def test_gio_picks_and_curve_match_a_plain_count(tmp_path):
    # Picks in reverse row order, so that pick order is not row order.
    order = [240 - i if i % 4 == 0 else None for i in range(240)]
    scored = scored_with_nulls(tmp_path / "s.parquet", extra={"gio_order": pa.array(order, pa.int32()),
                                                             "gio_selected": pa.array([o is not None for o in order])})
    df = pl.read_parquet(scored)
    sf = data.open_scores(scored)
    labels = data.read_labels(sf)
    picks = rstats.gio_picks(sf, labels)
    assert [r[0] for r in picks] == ["a", "b", "c"]
    for r in picks:
        sel = df.filter(pl.col("label") == r[0])["gio_selected"].to_list()
        assert r[1:] == [sum(sel), len(sel), sum(sel) / len(sel)]
    curve = rstats.gio_curve(sf, labels)
    order = sorted((o, lab) for o, lab in zip(df["gio_order"].to_list(), df["label"].to_list()) if o is not None)
    expect: dict[str, tuple[list, list]] = {}
    for step, (_, lab) in enumerate(order, 1):
        steps, cum = expect.setdefault(lab, ([], []))
        steps.append(step)
        cum.append(len(cum) + 1)
    assert {k: (s.tolist(), c.tolist()) for k, (s, c) in curve.items()} == expect


def test_dup_group_sizes_match_a_plain_count(tmp_path):
    groups = pa.array([i // 3 if i % 5 else (None if i % 2 else 1000 + i) for i in range(100)], pa.int64())
    scored = scored_with_nulls(tmp_path / "s.parquet", n=100, extra={"dup_group": groups})
    got = {s: g for s, g in rstats.dup_groups(data.open_scores(scored))}
    from collections import Counter
    sizes = Counter(Counter(v for v in groups.to_pylist() if v is not None).values())
    assert got == {s: g for s, g in sizes.items() if s > 1} and 1 not in got and 3 in got


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


def test_score_columns_and_text_column_are_found(tmp_path):
    sf = data.open_scores(scored_with_nulls(tmp_path / "s.parquet", n=30))
    assert sf.text == "text" and sf.rows == 30
    assert sf.columns == ["el2n", "grand", "rho", "il_loss", "gio_order", "dup_sim"]


def test_labels_are_codes_into_the_sorted_names(tmp_path):
    lab = [None, 3, 1, 3, None, 20, 1]
    pq.write_table(pa.table({"id": list("abcdefg"), "label": lab, "el2n": [0.0] * 7}), tmp_path / "s.parquet")
    got = data.read_labels(data.open_scores(tmp_path / "s.parquet"))
    # The text of the labels, sorted as text (as polars sorts a String column), nulls last.
    assert got.names == ["1", "20", "3", None] and got.codes.dtype == np.uint8
    assert [got.names[c] for c in got.codes] == [None if v is None else str(v) for v in lab]
    assert got.counts().tolist() == [2, 1, 2, 2]


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
