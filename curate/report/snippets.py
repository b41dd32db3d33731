"""Text snippets and thumbnails for the examples shown, from the scored file or from ``--source``.

``--source`` is the input that was embedded: a table (file, directory or glob of CSV/JSONL/Parquet)
for text, or an image folder for thumbnails. Anything that cannot supply the shown examples is
an error, never silently ignored.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from curate.errors import InputError
from curate.io.parquet import open_stream
from curate.io.sources import ImageFolderSource, TableSource, open_source

SNIPPET = 160


def from_scored(path: Path, column: str | None, ids: set[str], batch_rows: int = 8192) -> dict[str, str]:
    """id -> text of ``column`` (a text column kept in the scored file) for ``ids``, read batch by batch."""
    if column is None or not ids:
        return {}
    out = {}
    for batch in open_stream(path).iter_batches(batch_size=batch_rows, columns=["id", column], use_threads=False):
        for i, t in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if str(i) in ids and t is not None:
                out[str(i)] = str(t)
    return out


def from_source(spec: str, ids: set[str], prov: dict) -> tuple[dict[str, str], dict[str, str]]:
    """(id -> text, id -> base64 PNG thumbnail) for ``ids`` from the ``--source`` input."""
    src = open_source(spec)
    if isinstance(src, ImageFolderSource):
        thumbs = {}
        root = src.root
        for i in ids:
            p = (root / i).resolve()
            # Ids come from the scored file: never follow one outside the folder.
            if p.is_relative_to(root) and p.is_file():
                thumbs[i] = thumbnail(p)
        if ids and not thumbs:
            raise InputError(f"--source {spec}: none of the shown ids is an image under it "
                             f"(e.g. {sorted(ids)[0]!r}); pass the image folder that was embedded")
        return {}, thumbs
    assert isinstance(src, TableSource)
    rule = (prov.get("source") or {}).get("id_rule", "")
    id_col = rule[len("column "):] if rule.startswith("column ") else None
    schema = src.schema()
    strings = [f.name for f in schema if (f.type == "string" or f.type == "large_string") and f.name != id_col]
    if not strings:
        raise InputError(f"--source {spec}: has no text column to show; columns present: {', '.join(schema.names)}")
    if id_col is not None:
        src.check_columns([id_col])
    texts: dict[str, str] = {}
    for batch in src.rows([strings[0]], id_col):
        for t, i in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if i in ids and t is not None:
                texts[i] = str(t)
    if ids and not texts:
        raise InputError(f"--source {spec}: none of the shown ids is in it (e.g. {sorted(ids)[0]!r}); "
                         "pass the table that was embedded")
    return texts, {}


def thumbnail(path: Path) -> str | None:
    """A 64 px PNG of the image as base64, or None if it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((64, 64))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return base64.b64encode(buf.getvalue()).decode()
