"""One shard of an embed run as a plain, picklable task, and the function that runs it.

A ``ShardTask`` names everything a worker needs (config, source, the rows to read, where to
write), so an engine can ship it to another thread, process or machine. ``run_shard`` reads its
own rows, loads the encoder lazily (once per worker, cached by encoder configuration), embeds
batch by batch and writes ``part-NNNNN.parquet`` into the parts directory (temp file + rename).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.embed.config import EmbedConfig
from curate.errors import InputError
from curate.io.atomic import atomic_path
from curate.io.fs import as_path
from curate.io.parquet import WRITE_OPTIONS, embedding_column
from curate.io.sources import ID, PATH, ImageFolderSource, Source

Segments = tuple[tuple[int, int, int], ...]  # (file index, first row, end row) in the source


@dataclass(frozen=True)
class ShardTask:
    """Shard ``index``: the source rows in ``segments`` (``rows`` in all), written under ``parts``."""

    config: EmbedConfig  # threads already resolved
    source: Source
    modality: str  # "text" | "image"
    columns: tuple[str, ...]  # source columns to read
    index: int
    segments: Segments
    rows: int
    parts: str

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}.parquet"

    def locate(self, i: int) -> str:
        """``<file>: row <n>`` of the shard's ``i``-th row (0-based), for error messages."""
        for k, start, stop in self.segments:
            if i < stop - start:
                if isinstance(self.source, ImageFolderSource):
                    return f"{self.source.images[start + i]}"
                return f"{self.source.files[k]}: row {start + i}"
            i -= stop - start
        raise IndexError(i)


# One encoder per (configuration, thread): tokenizers and models are not safe to share across
# threads, and a worker process keeps its model between the shards it runs. Thread-local, so a
# finished pool thread's models are freed with it.
_LOCAL = threading.local()


def encoder_key(modality: str, cfg: EmbedConfig) -> tuple:
    text = modality == "text"
    return (modality, cfg.model, cfg.batch_size, cfg.normalize, cfg.image_size if modality == "image" else None, cfg.device,
            cfg.backend if text else None, cfg.backend_cache if text else None, cfg.threads if text else None)


def get_encoder(modality: str, cfg: EmbedConfig):
    cache = getattr(_LOCAL, "encoders", None)
    if cache is None:
        cache = _LOCAL.encoders = {}
    key = encoder_key(modality, cfg)
    if key not in cache:
        cache[key] = _make_encoder(modality, cfg)
    return cache[key]


def _make_encoder(modality: str, cfg: EmbedConfig):
    if modality == "text":
        from curate.embed.text import make_text_encoder

        return make_text_encoder(cfg.model, cfg.batch_size, cfg.normalize, device=cfg.device, backend=cfg.backend,
                                 cache_dir=cfg.backend_cache, threads=cfg.threads)
    from curate.embed.image import ImageEncoder

    if cfg.model not in (None, "efficientnet-lite0"):
        raise InputError(f"--model {cfg.model}: images use the packaged efficientnet-lite0 model only")
    return ImageEncoder(cfg.image_size, cfg.batch_size, device=cfg.device)


def _label_missing(labels: pa.ChunkedArray) -> np.ndarray:
    """Bool mask of null labels, NaN counting as null for float labels."""
    missing = labels.is_null()
    if pa.types.is_floating(labels.type):
        missing = pc.or_kleene(missing, pc.is_nan(labels)).fill_null(True)
    return missing.to_numpy(zero_copy_only=False).astype(bool)


def run_shard(task: ShardTask, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Embed and write one shard. Returns ``{index, rows, skipped, dropped, file}``.

    ``on_batch(n)`` is called after every batch of ``n`` rows (progress; in-process only).
    """
    import torch

    cfg = task.config
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    advance = on_batch or (lambda n: None)
    rows = task.source.rows(list(task.columns), cfg.id_column, cfg.image_column, batch_rows=65536,
                            segments=task.segments, allow_outside=cfg.allow_outside_paths)
    batches = list(rows)
    table = pa.Table.from_batches(batches) if batches else None
    if table is None or table.num_rows != task.rows:
        raise InputError(f"{task.locate(0)}: the input changed while embedding; re-run the command")
    keep = np.ones(table.num_rows, dtype=bool)
    label_src = "label" if (task.modality == "image" and cfg.image_column is None) else cfg.label_column
    dropped = 0
    if label_src:
        missing = _label_missing(table.column(label_src))
        if missing.any():
            if not cfg.drop_unlabelled:
                raise InputError(
                    f"{task.locate(int(np.flatnonzero(missing)[0]))}: label column {label_src!r} is null or NaN; "
                    "label the row, or pass --drop-unlabelled to skip unlabelled rows"
                )
            keep &= ~missing
            dropped = int(missing.sum())
    skipped: list[dict] = []
    ids = table.column(ID).to_pylist()
    if task.modality == "text":
        emb = _embed_text(task, table, keep, ids, skipped, advance, dropped)
    else:
        emb = _embed_images(task, table, keep, ids, skipped, advance, dropped)
    kept = table.filter(pa.array(keep)) if not keep.all() else table
    arrays, names = [kept.column(ID)], ["id"]
    if label_src:
        arrays.append(kept.column(label_src))
        names.append("label")
    for c in cfg.keep_columns:
        arrays.append(kept.column(c))
        names.append(c)
    arrays.append(embedding_column(emb))
    names.append("embedding")
    with atomic_path(as_path(task.parts) / task.name) as tmp:
        pq.write_table(pa.Table.from_arrays(arrays, names=names), tmp, **WRITE_OPTIONS)
    return {"index": task.index, "rows": task.rows, "skipped": skipped, "dropped": dropped, "file": task.name}


def _embed_text(task, table, keep, ids, skipped, advance, dropped) -> np.ndarray:
    cfg = task.config
    texts = table.column(cfg.text_column).to_pylist()
    for i, t in enumerate(texts):
        if not keep[i]:
            continue
        if not isinstance(t, str) or t == "":
            what = "null" if t is None else "empty" if t == "" else f"not text ({type(t).__name__})"
            if cfg.on_error == "skip":
                keep[i] = False
                skipped.append({"id": ids[i], "error": f"text is {what}"})
                continue
            raise InputError(
                f"{task.locate(i)}: text column {cfg.text_column!r} is {what}; "
                "fill or drop the row, or pass --on-error skip"
            )
    good = [t for t, k in zip(texts, keep) if k]
    advance(len(texts) - len(good))
    encoder = get_encoder("text", cfg)
    out = np.zeros((len(good), encoder.dimension), np.float32)
    order = length_order(encoder.token_lengths(good))
    for s in range(0, len(good), cfg.batch_size):
        idx = order[s:s + cfg.batch_size]
        out[idx] = encoder.encode([good[j] for j in idx])
        advance(len(idx))
    return out


def length_order(lengths: np.ndarray) -> np.ndarray:
    """Row order for batching: longest first by token count, ties in input order (stable).

    Sorting the whole shard, not one batch, puts texts of similar length in the same batch, so
    little of each forward pass is padding; callers write each batch's rows back by index, so the
    output keeps the input order.
    """
    return np.argsort(-np.asarray(lengths), kind="stable")


def _embed_images(task, table, keep, ids, skipped, advance, dropped) -> np.ndarray:
    """Decode and preprocess one batch at a time, so memory is bounded by the batch, not the shard."""
    from curate.embed.image import preprocess

    cfg = task.config
    encoder = get_encoder("image", cfg)
    paths = table.column(PATH).to_pylist()
    todo = np.flatnonzero(keep)
    advance(len(paths) - len(todo))
    out: list[np.ndarray] = []
    for s in range(0, len(todo), cfg.batch_size):
        arrays = []
        for i in todo[s:s + cfg.batch_size]:
            p = paths[i]
            try:
                if p is None:
                    raise ValueError("image path is null")
                arrays.append(preprocess(p, encoder.image_size))
            except Exception as e:  # PIL raises many types for a damaged file
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                if cfg.on_error == "skip":
                    keep[i] = False
                    skipped.append({"id": ids[i], "path": p, "error": reason})
                    continue
                raise InputError(f"{p}: cannot read image ({reason}); fix or remove it, or pass --on-error skip") from None
        if arrays:
            out.append(encoder.features(np.stack(arrays)))
        advance(len(todo[s:s + cfg.batch_size]))
    return np.concatenate(out) if out else np.zeros((0, encoder.dimension), np.float32)
