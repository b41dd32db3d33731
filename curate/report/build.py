"""`curate report`: the page people look at first, before pruning.

Sections: a 2-D map of the embeddings (PCA of a seeded fixed-size sample) coloured by class and
by a chosen score, with the flagged examples (highest el2n, lowest rho) marked and listed; rank
correlations between scores; per score a full-width histogram with quantiles, per-class rows and
the top/bottom examples; GIO's picks per class and order curve; near-duplicate groups and pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.errors import InputError
from curate.io.parquet import read_provenance
from curate.io.provenance import base_record, fingerprint
from curate.report import data, html, output, plots, snippets
from curate.report.limits import MAX_EXAMPLES, MAX_SAMPLE, MIN_SAMPLE


def _flagged(df: pl.DataFrame, n: int) -> dict[str, list[int]]:
    """Marker name -> row indices: the n highest el2n and the n lowest rho (when present)."""
    idx = df.with_row_index("__row")
    out = {}
    for col, high in (("el2n", True), ("rho", False)):
        if col in df.columns and n:
            rows = idx.filter(data.finite(col)).sort(col, descending=high).head(n)["__row"].to_list()
            out[f"{'highest' if high else 'lowest'} {col}"] = rows
    return out


def build(scored: str | Path, out: str | Path, source: str | Path | None = None, n_examples: int = 5,
          overwrite: bool = False, map_score: str | None = None, map_sample: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Write OUT (HTML) and OUT_files/ (PNGs) from a scored Parquet; returns a summary dict."""
    scored, out = Path(scored), Path(out)
    if not 0 <= n_examples <= MAX_EXAMPLES:
        raise InputError(f"--examples {n_examples}: must be between 0 and {MAX_EXAMPLES}")
    if not MIN_SAMPLE <= map_sample <= MAX_SAMPLE:
        raise InputError(f"--map-sample {map_sample}: must be between {MIN_SAMPLE} and {MAX_SAMPLE:,}")
    if not 0 <= seed < 2**32:
        raise InputError(f"--seed {seed}: must be between 0 and 4294967295")
    inputs = [scored] + ([Path(source)] if source is not None and "*" not in str(source) else [])
    output.check(out, inputs, overwrite)
    df, cols, text_col = data.read_scores(scored)
    if map_score is not None and map_score not in cols:
        raise InputError(f"--map-score {map_score!r}: not a score column of {scored}; score columns: {', '.join(cols)}")
    if "label" not in df.columns:
        df = df.with_columns(pl.lit(None, pl.String).alias("label"))
    df = df.with_columns(pl.col("label").cast(pl.String))
    prov = read_provenance(scored)

    # Which rows get shown, so that text/thumbnails are fetched for those only.
    ordered = {c: df.filter(data.finite(c)).sort(c) for c in cols}
    shown = {c: (ordered[c].tail(n_examples).reverse(), ordered[c].head(n_examples)) if n_examples else (ordered[c].head(0),) * 2
             for c in cols}
    flagged = _flagged(df, n_examples)
    has_dup = "dup_of" in df.columns
    pairs = df.filter(pl.col("dup_of").is_not_null()).sort("dup_sim" if "dup_sim" in df.columns else "id",
                                                           descending=True).head(max(n_examples, 1) * 2) if has_dup else None
    ids: set[str] = set()
    for hi, lo in shown.values():
        ids |= set(hi["id"].cast(pl.String).to_list()) | set(lo["id"].cast(pl.String).to_list())
    for rows in flagged.values():
        ids |= set(df[rows]["id"].cast(pl.String).to_list())
    if pairs is not None:
        ids |= set(pairs["id"].cast(pl.String).to_list()) | set(pairs["dup_of"].cast(pl.String).to_list())
    texts, thumbs = snippets.from_scored(scored, text_col, ids), {}
    if source is not None:
        src_texts, thumbs = snippets.from_source(str(source), ids, prov)
        texts.update(src_texts)

    pngs: dict[str, bytes] = {}
    sections = []

    def ex_list(part: pl.DataFrame, col: str) -> str:
        return "<ul class='ex'>" + "".join(
            html.example(str(r["id"]), r["label"], float(r[col]), texts.get(str(r["id"])), thumbs.get(str(r["id"])))
            for r in part.iter_rows(named=True)) + "</ul>"

    # The embedding map.
    sample_rows = data.sample_rows(df.height, map_sample, seed, [r for rows in flagged.values() for r in rows])
    emb = data.sample_embeddings(scored, sample_rows)
    map_col = map_score or ("el2n" if "el2n" in cols else cols[0])
    if emb is not None and emb.shape[1] >= 1:
        xy = data.pca2(emb)
        sub = df[sample_rows.tolist()]
        score = sub[map_col].cast(pl.Float64).fill_null(np.nan).to_numpy()
        marks = {name: np.isin(sample_rows, rows) for name, rows in flagged.items()}
        pngs["map.png"] = plots.embedding_map(xy, sub["label"].fill_null("(none)").to_list(), score, map_col, marks)
        lists = "".join(f"<div><h4>{html.esc(name)}</h4>{ex_list(df[rows], name.split(' ', 1)[1])}</div>"
                        for name, rows in flagged.items())
        body = (f"<p class='note'>PCA of {len(sample_rows):,} rows (a seeded sample of {min(map_sample, df.height):,} "
                f"plus the flagged ones), coloured by class and by {html.esc(map_col)}.</p>"
                f"{html.img(pngs['map.png'], 'embedding map')}<div class='examples'>{lists}</div>")
        sections.append(html.section("map", "Embedding map", body))

    if len(cols) > 1:
        corr = data.spearman(df, cols)
        pngs["spearman.png"] = plots.heatmap(corr, cols)
        sections.append(html.section("correlation", "Rank correlation between scores (Spearman, rows where both are set)",
                                     html.img(pngs["spearman.png"], "Spearman correlations", cls="")))

    summary_q = {}
    for i, c in enumerate(cols):
        vals = data.values(df, c)
        missing = df.height - len(vals)
        if len(vals) == 0:
            sections.append(html.section(c, c, f"<p>no finite values ({missing:,} null or NaN)</p>"))
            continue
        qs = data.quantiles(df, c)
        summary_q[c] = {f"q{q:g}": v for q, v in qs.items()}
        name = f"hist_{i}.png"
        pngs[name], note = plots.histogram(vals, c, qs)
        qtext = ", ".join(f"q{q:g} = {v:.4g}" for q, v in qs.items())
        pc = data.per_class(df, c)
        per = html.table(["class", "n", "mean", "median", "min", "max"],
                         [[r["label"] if r["label"] is not None else "(none)", r["n"], r["mean"], r["median"], r["min"], r["max"]]
                          for r in pc.iter_rows(named=True)])
        hi, lo = shown[c]
        body = (f"<p>{len(vals):,} values ({missing:,} null or NaN left out); {html.esc(qtext)}</p>"
                f"{html.img(pngs[name], 'histogram of ' + c)}<p class='note'>{html.esc(note)}</p>{per}"
                f"<div class='examples'><div><h4>highest</h4>{ex_list(hi, c)}</div><div><h4>lowest</h4>{ex_list(lo, c)}</div></div>")
        sections.append(html.section(c, c, body))

    if "gio_selected" in df.columns:
        picks = data.gio_picks(df)
        body = html.table(["class", "picked", "class size", "share"],
                          [[r["label"] if r["label"] is not None else "(none)", r["picked"], r["size"], r["share"]]
                           for r in picks.iter_rows(named=True)])
        if "gio_order" in df.columns:
            curve = data.gio_curve(df)
            steps = {lab: (g["step"].to_numpy(), g["cum"].to_numpy())
                     for (lab,), g in curve.group_by("label", maintain_order=True)}
            pngs["gio_order.png"] = plots.gio_curve(dict(sorted(steps.items(), key=lambda kv: str(kv[0]))))
            body += html.img(pngs["gio_order.png"], "GIO order curve")
        sections.append(html.section("gio_selected", f"GIO selection: {int(picks['picked'].sum()):,} picked", body))

    if has_dup:
        body = ""
        if "dup_group" in df.columns:
            groups = data.dup_groups(df)
            body += html.table(["group size", "groups"], [[r["size"], r["groups"]] for r in groups.iter_rows(named=True)], left=0)
            if groups.height:
                pngs["dup_groups.png"] = plots.bars(groups["size"].to_list(), groups["groups"].to_list(), "group size", "groups")
                body += html.img(pngs["dup_groups.png"], "duplicate group sizes")
        rows = []
        for r in pairs.iter_rows(named=True):
            a, b = str(r["id"]), str(r["dup_of"])
            cell = lambda i: f"<code>{html.esc(i)}</code> {html.snippet(texts.get(i))}" + (
                f'<br><img class="thumb" src="data:image/png;base64,{thumbs[i]}" alt="{html.esc(i)}">' if i in thumbs else "")
            sim = f"{r['dup_sim']:.4f}" if "dup_sim" in r and r["dup_sim"] is not None else ""
            rows.append(f"<tr><td>{cell(a)}</td><td>{cell(b)}</td><td>{sim}</td></tr>")
        body += ("<table class='pairs'><tr><th class='l'>row</th><th class='l'>duplicates (kept)</th><th>cosine</th></tr>"
                 f"{''.join(rows)}</table>")
        n_dup = int(df["dup_of"].is_not_null().sum())
        sections.append(html.section("duplicates", f"Near-duplicates: {n_dup:,} rows duplicate a kept row", body))

    counts = df.group_by("label").len().sort("label", nulls_last=True)
    intro = (f"<p><code>{html.esc(scored)}</code>: {df.height:,} examples; score columns: {html.esc(', '.join(cols))}.</p>"
             + html.table(["class", "rows"], [[a if a is not None else "(none)", b] for a, b in counts.iter_rows()]))
    record = {**base_record("report"), "input": fingerprint(scored), "source": None if source is None else str(source),
              "options": {"examples": n_examples, "map_score": map_col, "map_sample": map_sample, "seed": seed}}
    page = html.page(scored.name, intro, sections, record)
    with output.commit(out) as (tmp_page, tmp_pngs):
        for name, png in pngs.items():
            (tmp_pngs / name).write_bytes(png)
        tmp_page.write_text(page, encoding="utf-8")
    return {"output": str(out), "pngs": str(output.files_dir(out)), "rows": df.height, "columns": cols,
            "quantiles": summary_q, "map_rows": int(len(sample_rows)) if emb is not None else 0}
