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
from curate.report import data, html, output, plots, snippets, stats
from curate.report.limits import MAX_EXAMPLES, MAX_SAMPLE, MIN_SAMPLE


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
    sf = data.open_scores(scored)
    cols = sf.columns
    if map_score is not None and map_score not in cols:
        raise InputError(f"--map-score {map_score!r}: not a score column of {scored}; score columns: {', '.join(cols)}")
    prov = read_provenance(scored)

    # Before the labels are read: the rank correlations are the pass that holds the most per row.
    corr = stats.spearman(sf, cols) if len(cols) > 1 else None
    labels = data.read_labels(sf)

    # One score column at a time: its figure and tables now, the rows it shows by index.
    pngs: dict[str, bytes] = {}
    summary_q, col_parts, flagged = {}, {}, {}
    shown_rows: list[np.ndarray] = []
    for i, c in enumerate(cols):
        col = stats.read_column(sf, c, labels, n_examples)
        if c in ("el2n", "rho") and n_examples:
            flagged[f"{'highest' if c == 'el2n' else 'lowest'} {c}"] = col.top if c == "el2n" else col.lowest
        shown_rows += [col.highest[0], col.lowest[0]]
        if len(col.values) == 0:
            col_parts[c] = None
            continue
        qs = stats.quantiles(col.values)
        summary_q[c] = {f"q{q:g}": v for q, v in qs.items()}
        name = f"hist_{i}.png"
        pngs[name], note = plots.histogram(col.values, c, qs)
        col_parts[c] = (len(col.values), col.missing, qs, name, note, stats.per_class(col, labels), col.highest, col.lowest)
        del col
    flagged = {k: flagged[k] for k in ("highest el2n", "lowest rho") if k in flagged}
    shown_rows += [rows for rows, _ in flagged.values()]

    has_dup = "dup_of" in sf.names
    pairs, n_dup = stats.dup_pairs(sf, max(n_examples, 1) * 2) if has_dup else (None, 0)
    # Which rows get shown, so that ids, text and thumbnails are fetched for those only.
    row_ids = data.ids_at(sf, np.concatenate(shown_rows))
    ids = set(row_ids.values())
    if pairs is not None:
        ids |= set(pairs["id"].to_list()) | set(pairs["dup_of"].cast(pl.String).to_list())
    texts, thumbs = snippets.from_scored(scored, sf.text, ids), {}
    if source is not None:
        src_texts, thumbs = snippets.from_source(str(source), ids, prov)
        texts.update(src_texts)

    def label(row: int):
        return labels.names[labels.codes[row]]

    def ex_list(rows: np.ndarray, values: np.ndarray) -> str:
        return "<ul class='ex'>" + "".join(
            html.example(row_ids[r], label(r), float(v), texts.get(row_ids[r]), thumbs.get(row_ids[r]))
            for r, v in zip(rows.tolist(), values.tolist())) + "</ul>"

    sections = []
    # The embedding map.
    sample_rows = data.sample_rows(sf.rows, map_sample, seed, [r for rows, _ in flagged.values() for r in rows.tolist()])
    emb = data.sample_embeddings(scored, sample_rows)
    map_col = map_score or ("el2n" if "el2n" in cols else cols[0])
    if emb is not None and emb.shape[1] >= 1:
        xy = data.pca2(emb)
        score = data.values_at(sf, map_col, sample_rows)
        marks = {name: np.isin(sample_rows, rows) for name, (rows, _) in flagged.items()}
        sample_labels = [n if n is not None else "(none)" for n in np.array(labels.names, dtype=object)[labels.codes[sample_rows]]]
        pngs["map.png"] = plots.embedding_map(xy, sample_labels, score, map_col, marks)
        lists = "".join(f"<div><h4>{html.esc(name)}</h4>{ex_list(rows, vals)}</div>" for name, (rows, vals) in flagged.items())
        body = (f"<p class='note'>PCA of {len(sample_rows):,} rows (a seeded sample of {min(map_sample, sf.rows):,} "
                f"plus the flagged ones), coloured by class and by {html.esc(map_col)}.</p>"
                f"{html.img(pngs['map.png'], 'embedding map')}<div class='examples'>{lists}</div>")
        sections.append(html.section("map", "Embedding map", body))

    if corr is not None:
        pngs["spearman.png"] = plots.heatmap(corr, cols)
        sections.append(html.section("correlation", "Rank correlation between scores (Spearman, rows where both are set)",
                                     html.img(pngs["spearman.png"], "Spearman correlations", cls="")))

    for c in cols:
        if col_parts[c] is None:
            sections.append(html.section(c, c, f"<p>no finite values ({sf.rows:,} null or NaN)</p>"))
            continue
        m, missing, qs, name, note, pc, hi, lo = col_parts[c]
        qtext = ", ".join(f"q{q:g} = {v:.4g}" for q, v in qs.items())
        per = html.table(["class", "n", "mean", "median", "min", "max"],
                         [[r[0] if r[0] is not None else "(none)", *r[1:]] for r in pc])
        body = (f"<p>{m:,} values ({missing:,} null or NaN left out); {html.esc(qtext)}</p>"
                f"{html.img(pngs[name], 'histogram of ' + c)}<p class='note'>{html.esc(note)}</p>{per}"
                f"<div class='examples'><div><h4>highest</h4>{ex_list(*hi)}</div><div><h4>lowest</h4>{ex_list(*lo)}</div></div>")
        sections.append(html.section(c, c, body))

    if "gio_selected" in sf.names:
        picks = stats.gio_picks(sf, labels)
        body = html.table(["class", "picked", "class size", "share"],
                          [[r[0] if r[0] is not None else "(none)", *r[1:]] for r in picks])
        if "gio_order" in sf.names:
            steps = stats.gio_curve(sf, labels)
            pngs["gio_order.png"] = plots.gio_curve(dict(sorted(steps.items(), key=lambda kv: str(kv[0]))))
            body += html.img(pngs["gio_order.png"], "GIO order curve")
        sections.append(html.section("gio_selected", f"GIO selection: {sum(r[1] for r in picks):,} picked", body))

    if has_dup:
        body = ""
        if "dup_group" in sf.names:
            groups = stats.dup_groups(sf)
            body += html.table(["group size", "groups"], groups, left=0)
            if groups:
                pngs["dup_groups.png"] = plots.bars([g[0] for g in groups], [g[1] for g in groups], "group size", "groups")
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
        sections.append(html.section("duplicates", f"Near-duplicates: {n_dup:,} rows duplicate a kept row", body))

    counts = labels.counts()
    intro = (f"<p><code>{html.esc(scored)}</code>: {sf.rows:,} examples; score columns: {html.esc(', '.join(cols))}.</p>"
             + html.table(["class", "rows"], [[a if a is not None else "(none)", int(b)] for a, b in zip(labels.names, counts)]))
    record = {**base_record("report"), "input": fingerprint(scored), "source": None if source is None else str(source),
              "options": {"examples": n_examples, "map_score": map_col, "map_sample": map_sample, "seed": seed}}
    page = html.page(scored.name, intro, sections, record)
    with output.commit(out) as (tmp_page, tmp_pngs):
        for name, png in pngs.items():
            (tmp_pngs / name).write_bytes(png)
        tmp_page.write_text(page, encoding="utf-8")
    return {"output": str(out), "pngs": str(output.files_dir(out)), "rows": sf.rows, "columns": cols,
            "quantiles": summary_q, "map_rows": int(len(sample_rows)) if emb is not None else 0}
