"""`curate report`: a self-contained HTML page (plus PNGs) to look at scores before pruning.

For every score column: a histogram with quantile lines and per-class summaries; across score
columns: Spearman rank correlations; for each score: its top and bottom examples (text
snippets from a passthrough text column, thumbnails when the ids are image paths under
``--source``).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.errors import InputError
from curate.io.atomic import atomic_dir, atomic_path, check_distinct, check_output
from curate.io.parquet import read_table

KNOWN = ["el2n", "grand", "rho", "target_loss", "il_loss", "gio_score", "gio_order"]
QUANTILES = (0.1, 0.5, 0.9)


def score_columns(df: pl.DataFrame) -> list[str]:
    cols = [c for c in KNOWN if c in df.columns]
    extra = [c for c, t in df.schema.items() if t.is_float() and c not in cols and c not in ("label",)]
    return cols + extra


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _histogram(values: np.ndarray, name: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.hist(values, bins=min(60, max(10, len(values) // 20)), color="#4c72b0", alpha=0.85)
    for q in QUANTILES:
        v = float(np.quantile(values, q))
        ax.axvline(v, color="#c44e52", ls="--", lw=1)
        ax.text(v, ax.get_ylim()[1] * 0.95, f"q{q:g}", color="#c44e52", fontsize=8, ha="center", va="top",
                bbox=dict(facecolor="white", edgecolor="none", pad=1))
    ax.set_title(f"{name} (n = {len(values):,})", fontsize=10)
    ax.set_xlabel(name)
    ax.set_ylabel("examples")
    return _png(fig)


def _heatmap(corr: np.ndarray, names: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.2))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(corr[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("Spearman rank correlation", fontsize=10)
    return _png(fig)


def spearman(df: pl.DataFrame, cols: list[str]) -> np.ndarray:
    ranked = df.select([pl.col(c).cast(pl.Float64).rank("average").alias(c) for c in cols])
    k = len(cols)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            pair = ranked.select(cols[i], cols[j]).drop_nulls()
            v = pair.select(pl.corr(cols[i], cols[j])).item() if pair.height > 2 else None
            out[i, j] = out[j, i] = np.nan if v is None else v
    return out


def _thumb(path: Path) -> str | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((64, 64))
            im = im.resize((64, 64)) if min(im.size) < 32 else im
            buf = io.BytesIO()
            im.save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()
    except Exception:
        return None


def build(scored: str | Path, output: str | Path, source: str | Path | None = None, n_examples: int = 5,
          overwrite: bool = False) -> dict[str, Any]:
    output = Path(output)
    png_dir = output.with_name(output.stem + "_files")
    check_distinct(output, png_dir)
    check_output(output, overwrite, inputs=(scored, source))
    check_output(png_dir, overwrite, inputs=(scored, source))
    table = read_table(scored)
    if "id" not in table.column_names:
        raise InputError(f"{scored}: no 'id' column; report reads files written by `curate score`")
    df = pl.from_arrow(table.drop_columns([c for c in ("embedding",) if c in table.column_names]))
    cols = score_columns(df)
    if not cols:
        raise InputError(f"{scored}: no score columns; run `curate score` first")
    text_col = next((c for c, t in df.schema.items() if t == pl.String and c not in ("id", "label")), None)
    source = Path(source) if source else None
    pngs: dict[str, bytes] = {}
    sections = []
    for c in cols:
        vals = df[c].cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
        if len(vals) == 0:
            continue
        pngs[f"hist_{c}.png"] = _histogram(vals, c)
        qs = {f"q{q:g}": float(np.quantile(vals, q)) for q in QUANTILES}
        per_class = ""
        if "label" in df.columns:
            g = (df.group_by("label").agg(pl.len().alias("n"), pl.col(c).mean().alias("mean"), pl.col(c).median().alias("median"),
                                          pl.col(c).min().alias("min"), pl.col(c).max().alias("max")).sort("label"))
            rows = "".join(f"<tr><td>{html.escape(str(r['label']))}</td><td>{r['n']}</td>" +
                           "".join(f"<td>{(r[k] if r[k] is not None else float('nan')):.4g}</td>" for k in ("mean", "median", "min", "max")) + "</tr>"
                           for r in g.iter_rows(named=True))
            per_class = f"<table><tr><th>class</th><th>n</th><th>mean</th><th>median</th><th>min</th><th>max</th></tr>{rows}</table>"
        ordered = df.filter(pl.col(c).is_not_null() & ~pl.col(c).cast(pl.Float64).is_nan()).sort(c)
        ex = []
        for title, part in (("highest", ordered.tail(n_examples).reverse()), ("lowest", ordered.head(n_examples))):
            items = []
            for r in part.iter_rows(named=True):
                snippet = html.escape(str(r[text_col])[:160]) + ("…" if len(str(r[text_col])) > 160 else "") if text_col else ""
                img = ""
                if source is not None and (source / str(r["id"])).is_file():
                    b64 = _thumb(source / str(r["id"]))
                    img = f'<img class="thumb" src="data:image/png;base64,{b64}" alt="{html.escape(str(r["id"]))}">' if b64 else ""
                label = f" [{html.escape(str(r['label']))}]" if "label" in r else ""
                items.append(f"<li>{img}<code>{html.escape(str(r['id']))}</code>{label} <b>{r[c]:.4g}</b> {snippet}</li>")
            ex.append(f"<div><h4>{title}</h4><ul class='ex'>{''.join(items)}</ul></div>")
        b64 = base64.b64encode(pngs[f"hist_{c}.png"]).decode()
        qtext = ", ".join(f"{k} = {v:.4g}" for k, v in qs.items())
        sections.append(f"<section id='{c}'><h2>{c}</h2><p>{len(vals):,} values; {qtext}</p>"
                        f"<img src='data:image/png;base64,{b64}' alt='histogram of {c}'>{per_class}"
                        f"<div class='examples'>{''.join(ex)}</div></section>")
    corr_html = ""
    if len(cols) > 1:
        corr = spearman(df, cols)
        pngs["spearman.png"] = _heatmap(corr, cols)
        b64 = base64.b64encode(pngs["spearman.png"]).decode()
        corr_html = f"<section id='correlation'><h2>Rank correlation between scores</h2><img src='data:image/png;base64,{b64}' alt='Spearman correlations'></section>"
    counts = ""
    if "label" in df.columns:
        lc = df.group_by("label").len().sort("label")
        counts = ", ".join(f"{html.escape(str(a))}: {b}" for a, b in lc.iter_rows())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>curate report: {html.escape(Path(scored).name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}section{{border-top:1px solid #ddd;margin-top:1.5em}}
.examples{{display:flex;gap:2em}}.ex{{font-size:13px;list-style:none;padding:0}}.ex li{{margin:4px 0}}.thumb{{width:48px;height:48px;vertical-align:middle;margin-right:6px;image-rendering:pixelated}}</style></head>
<body><h1>curate report</h1><p><code>{html.escape(str(scored))}</code>: {df.height:,} examples, score columns: {', '.join(cols)}.</p>
<p>Classes: {counts or 'no labels'}</p>{corr_html}{''.join(sections)}</body></html>"""
    with atomic_dir(png_dir) as tmp:
        for name, data in pngs.items():
            (tmp / name).write_bytes(data)
    with atomic_path(output) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"output": str(output), "pngs": str(png_dir), "rows": df.height, "columns": cols}
