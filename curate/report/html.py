"""Page assembly. Every value that comes from the data (column names, ids, labels, texts, file
names) passes through :func:`esc`; nothing from the input reaches the page unescaped."""

from __future__ import annotations

import base64
import html
import json

GENERATOR = '<meta name="generator" content="curate report">'

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1150px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td.l,th.l{text-align:left}section{border-top:1px solid #ddd;margin-top:1.5em}img.plot{width:100%;height:auto}
.examples{display:flex;gap:2em}.examples>div{flex:1;min-width:0}.ex{font-size:13px;list-style:none;padding:0}
.ex li{margin:4px 0}.thumb{width:48px;height:48px;vertical-align:middle;margin-right:6px}.note{color:#666;font-size:13px}
.pairs td{text-align:left;vertical-align:top;font-size:13px;max-width:30em}"""


def esc(value) -> str:
    """HTML-escape any value (quotes included, so it is safe inside attributes too)."""
    return html.escape(str(value), quote=True)


def img(png: bytes, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{esc(alt)}">'


def num(v) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else esc(v)


def table(header: list[str], rows: list[list], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are text (escaped, left-aligned), the rest numbers."""
    th = "".join(f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="l">{esc(c)}</td>' if i < left else f"<td>{num(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def snippet(text: str | None) -> str:
    if not text:
        return ""
    return esc(text[:160]) + ("…" if len(text) > 160 else "")


def example(row_id: str, label, value: float, text: str | None, thumb: str | None) -> str:
    pic = f'<img class="thumb" src="data:image/png;base64,{thumb}" alt="{esc(row_id)}">' if thumb else ""
    lab = f" [{esc(label)}]" if label is not None else ""
    return f"<li>{pic}<code>{esc(row_id)}</code>{lab} <b>{value:.4g}</b> {snippet(text)}</li>"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, intro: str, sections: list[str], provenance: dict) -> str:
    """The whole document; ``provenance`` is stored as JSON in ``<meta name="curate">``."""
    prov = esc(json.dumps(provenance, sort_keys=True, default=str))
    return (f'<!doctype html><html><head><meta charset="utf-8">{GENERATOR}<meta name="curate" content="{prov}">'
            f'<title>curate report: {esc(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>curate report</h1>{intro}{''.join(sections)}</body></html>")
