"""The embed step: stream a source through an encoder in deterministic shards, resumably.

Shard ``k`` holds global rows ``[k * shard_size, (k + 1) * shard_size)`` of the source in its
sorted order. Each finished shard is written as ``OUT.parts/part-NNNNN.parquet`` (temp file +
rename) and recorded in ``OUT.parts/_manifest.json`` with the configuration hash. A re-run of
the same command skips finished shards; the final file is assembled from the parts in order,
so an interrupted-then-resumed run gives the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curate import progress
from curate.embed.executor import Executor, make_executor
from curate.errors import InputError
from curate.io.atomic import atomic_path, check_output
from curate.io.parquet import WRITE_OPTIONS, embedding_column, with_provenance
from curate.io.provenance import base_record, config_hash
from curate.io.sources import ID, PATH, ImageFolderSource, Source, open_source

RESERVED = {"id", "label", "embedding"}


@dataclass(frozen=True)
class EmbedConfig:
    """Options of an embed run. Every field that changes the output is part of the resume hash."""

    text_column: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    keep_columns: tuple[str, ...] = ()
    model: str | None = None
    batch_size: int = 64
    image_size: int = 224
    normalize: bool = False
    shard_size: int = 4096
    workers: int = 1
    threads: int | None = None  # torch intra-op threads; None = number of CPUs
    on_error: str = "raise"  # "raise" | "skip"
    engine: str = "local"

    def output_affecting(self) -> dict[str, Any]:
        d = asdict(self)
        # How shards are scheduled does not change any shard's bytes.
        for k in ("workers", "engine"):
            d.pop(k)
        return d


@dataclass
class _Plan:
    source: Source
    modality: str
    columns: list[str]  # source columns to read, in order
    n_rows: int
    fingerprints: list[dict] = field(default_factory=list)


def _validate(source: Source, cfg: EmbedConfig) -> tuple[str, list[str]]:
    if cfg.on_error not in ("raise", "skip"):
        raise InputError(f"--on-error {cfg.on_error}: expected 'raise' or 'skip'")
    if cfg.batch_size < 1 or cfg.shard_size < 1:
        raise InputError("--batch-size and --shard-size must be positive")
    for c in cfg.keep_columns:
        if c in RESERVED:
            raise InputError(f"--keep-column {c}: the name is reserved in curate's output; rename the column")
    if isinstance(source, ImageFolderSource):
        if cfg.text_column or cfg.image_column:
            raise InputError(f"{source.root}: is an image folder; --text-column/--image-column apply to tables only")
        if cfg.keep_columns or cfg.id_column or cfg.label_column:
            raise InputError(f"{source.root}: an image folder has no columns; ids are relative paths, labels the class folders")
        return "image", []
    if bool(cfg.text_column) == bool(cfg.image_column):
        names = ", ".join(source.schema().names)
        raise InputError(
            f"{source.files[0]}: pass exactly one of --text-column or --image-column (columns present: {names})"
        )
    content = cfg.text_column or cfg.image_column
    columns = list(dict.fromkeys([content] + ([cfg.label_column] if cfg.label_column else []) + list(cfg.keep_columns)))
    source.check_columns(columns + ([cfg.id_column] if cfg.id_column else []))
    return ("text" if cfg.text_column else "image"), columns


def _scan_ids(source: Source, cfg: EmbedConfig, columns: list[str]) -> int:
    """Count rows and reject duplicate ids before any work is done."""
    seen: dict[str, None] = {}
    n = 0
    probe = [] if cfg.id_column else columns[:1]
    for batch in source.rows(probe, cfg.id_column, batch_rows=65536):
        n += batch.num_rows
        if cfg.id_column:
            for value in batch.column(ID).to_pylist():
                if value in seen:
                    raise InputError(
                        f"{getattr(source, 'root', '')}: duplicate id {value!r} in --id-column {cfg.id_column}; ids must be unique"
                    )
                seen[value] = None
    if n == 0:
        raise InputError(f"{getattr(source, 'files', [source.root])[0]}: the dataset is empty (no rows)")
    return n


def _shards(source: Source, cfg: EmbedConfig, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
    """Yield (index, rows) for consecutive runs of exactly ``shard_size`` rows (the last may be short)."""
    image_col = cfg.image_column
    buf: list[pa.RecordBatch] = []
    buffered = 0
    index = 0
    for batch in source.rows(columns, cfg.id_column, image_col, batch_rows=min(cfg.shard_size, 65536)):
        buf.append(batch)
        buffered += batch.num_rows
        while buffered >= cfg.shard_size:
            table = pa.Table.from_batches(buf)
            yield index, table.slice(0, cfg.shard_size)
            rest = table.slice(cfg.shard_size)
            buf, buffered = rest.to_batches(), rest.num_rows
            index += 1
    if buffered:
        yield index, pa.Table.from_batches(buf)


class _Encoders:
    """One encoder per worker thread: tokenizers and models are not safe to share across threads."""

    def __init__(self, modality: str, cfg: EmbedConfig):
        self.modality, self.cfg = modality, cfg
        self._local = threading.local()
        self.first = self._make()
        self._local.enc = self.first

    def _make(self):
        if self.modality == "text":
            from curate.embed.text import TextEncoder

            return TextEncoder(self.cfg.model, self.cfg.batch_size, self.cfg.normalize)
        from curate.embed.image import ImageEncoder

        if self.cfg.model not in (None, "efficientnet-lite0"):
            raise InputError(f"--model {self.cfg.model}: images use the packaged efficientnet-lite0 model only")
        return ImageEncoder(self.cfg.image_size, self.cfg.batch_size)

    def get(self):
        enc = getattr(self._local, "enc", None)
        if enc is None:
            enc = self._local.enc = self._make()
        return enc


def _embed_shard(table: pa.Table, modality: str, encoder, cfg: EmbedConfig) -> tuple[pa.Table, list[dict]]:
    ids = table.column(ID).to_pylist()
    skipped: list[dict] = []
    keep = np.ones(len(ids), dtype=bool)
    if modality == "text":
        texts = table.column(cfg.text_column).to_pylist()
        for i, t in enumerate(texts):
            if t is None or not isinstance(t, str):
                if cfg.on_error == "skip":
                    keep[i] = False
                    skipped.append({"id": ids[i], "error": f"text is {'null' if t is None else type(t).__name__}"})
                    continue
                raise InputError(
                    f"text column {cfg.text_column!r}: row with id {ids[i]!r} is "
                    f"{'null' if t is None else 'not a string'}; fill or drop it, or pass --on-error skip"
                )
        emb = encoder.encode([t for t, k in zip(texts, keep) if k])
    else:
        from curate.embed.image import preprocess

        paths = table.column(PATH).to_pylist()
        arrays = []
        for i, p in enumerate(paths):
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
        emb = encoder.encode_arrays(arrays)
    kept = table.filter(pa.array(keep)) if not keep.all() else table
    arrays = [kept.column(ID)]
    names = ["id"]
    label_src = "label" if (modality == "image" and cfg.image_column is None) else cfg.label_column
    if label_src:
        arrays.append(kept.column(label_src))
        names.append("label")
    for c in cfg.keep_columns:
        arrays.append(kept.column(c))
        names.append(c)
    arrays.append(embedding_column(emb))
    names.append("embedding")
    return pa.Table.from_arrays(arrays, names=names), skipped


class _Manifest:
    """``_manifest.json`` of a parts directory: configuration hash, inputs, finished shards."""

    def __init__(self, parts: Path, chash: str, inputs: list[dict]):
        self.parts, self.path = parts, parts / "_manifest.json"
        self.data = {"config_hash": chash, "inputs": inputs, "finished": {}}

    def load_or_reset(self) -> int:
        """Reuse finished shards of a matching earlier run; wipe a mismatching one. Returns shards reused."""
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            if old.get("config_hash") == self.data["config_hash"]:
                done = {k: v for k, v in old.get("finished", {}).items() if (self.parts / v["file"]).exists()}
                self.data["finished"] = done
                return len(done)
            progress.warn(f"{self.parts}: configuration or inputs changed since the interrupted run; starting clean")
        elif self.parts.exists():
            progress.warn(f"{self.parts}: no manifest in leftover parts directory; starting clean")
        shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True)
        self.save()
        return 0

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, sort_keys=True, indent=1))

    def done(self, index: int) -> bool:
        return str(index) in self.data["finished"]


def embed(input: str | Path, output: str | Path, config: EmbedConfig = EmbedConfig(), overwrite: bool = False,
          executor: Executor | None = None) -> dict[str, Any]:
    """Embed INPUT into a Parquet file at OUTPUT (see the module docstring). Returns a summary.

    ``executor`` decides where shards run (default: in-process threads, ``config.workers``).
    """
    output = Path(output)
    check_output(output, overwrite, inputs=(input,))
    source = open_source(input)
    modality, columns = _validate(source, config)
    n_rows = _scan_ids(source, config, columns)

    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    encoders = _Encoders(modality, config)
    model_info = encoders.first.describe()
    inputs = source.fingerprint()
    conf = {**config.output_affecting(), "threads": threads, "modality": modality}
    chash = config_hash({"config": conf, "inputs": inputs, "model": model_info})

    parts = output.with_name(output.name + ".parts")
    manifest = _Manifest(parts, chash, inputs)
    reused = manifest.load_or_reset()
    if reused:
        progress.log(f"resuming: {reused} finished shard(s) reused from {parts}")

    def run(task: tuple[int, pa.Table]) -> tuple[int, int, list[dict], str | None]:
        index, table = task
        if manifest.done(index):
            return index, table.num_rows, [], None
        part, skipped = _embed_shard(table, modality, encoders.get(), config)
        name = f"part-{index:05d}.parquet"
        with atomic_path(parts / name) as tmp:
            pq.write_table(part, tmp, **WRITE_OPTIONS)
        return index, table.num_rows, skipped, name

    executor = executor or make_executor(config.engine, config.workers)
    with progress.bar("embed", total=n_rows) as bar:
        for index, rows, skipped, name in executor.map(run, _shards(source, config, columns)):
            if name is not None:
                manifest.data["finished"][str(index)] = {"file": name, "rows": rows, "skipped": skipped}
                manifest.save()
            bar.advance(rows)

    finished = [manifest.data["finished"][k] for k in sorted(manifest.data["finished"], key=int)]
    skipped = [s for f in finished for s in f["skipped"]]
    n_out = n_rows - len(skipped)
    if n_out == 0:
        raise InputError(f"{input}: every row was skipped ({skipped[0]['error']}); nothing to write")
    record = base_record("embed")
    record.update({
        "inputs": inputs,
        "source": {"kind": source.kind, "format": getattr(source, "fmt", "images"),
                   "root": str(getattr(source, "root", "")),
                   "id_rule": f"column {config.id_column}" if config.id_column else
                   ("relative path" if isinstance(source, ImageFolderSource) else "<relative file>:<row>")},
        "embedding_model": model_info,
        "config": conf,
        "rows": n_out,
        "skipped": skipped,
    })
    with atomic_path(output) as tmp:
        writer = None
        for f in finished:
            part = pq.read_table(parts / f["file"])
            if part.num_rows == 0:
                continue
            if writer is None:
                writer = pq.ParquetWriter(tmp, with_provenance(part, record).schema, **WRITE_OPTIONS)
            writer.write_table(part.replace_schema_metadata(with_provenance(part, record).schema.metadata))
        writer.close()
    shutil.rmtree(parts, ignore_errors=True)
    return {"output": str(output), "rows": n_out, "skipped": len(skipped), "dimension": model_info["dimension"],
            "model": model_info["name"], "modality": modality, "shards": len(finished), "resumed_shards": reused}
