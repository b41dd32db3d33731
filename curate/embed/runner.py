"""The embed step: stream a source through an encoder in deterministic shards, resumably.

Shard ``k`` holds global rows ``[k * shard_size, (k + 1) * shard_size)`` of the source in its
sorted order; the driver counts rows per file (reading only ids) and hands each shard to the
executor as a picklable ``ShardTask`` that reads its own rows (``curate.embed.shard``). Each finished shard is written as ``OUT.parts/part-NNNNN.parquet`` (temp file +
rename) and recorded in ``OUT.parts/_manifest.json`` with the configuration hash. A re-run of
the same command skips finished shards; the final file is assembled from the parts in order,
so an interrupted-then-resumed run gives the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from curate import progress
from curate.embed.backends import resolve_backend
from curate.embed.config import EmbedConfig
from curate.embed.executor import Executor, make_executor
from curate.embed.shard import ShardTask, get_encoder, run_shard
from curate.errors import InputError
from curate.runtime import Runtime
from curate.io.atomic import atomic_path, check_output
from curate.io.fs import as_path, open_input, rmtree
from curate.io.parquet import WRITE_OPTIONS, with_provenance
from curate.io.provenance import base_record, config_hash
from curate.io.sources import ID, ImageFolderSource, Source, TableSource, open_source

__all__ = ["EmbedConfig", "embed"]

RESERVED = {"id", "label", "embedding"}


def _validate(source: Source, cfg: EmbedConfig) -> tuple[str, list[str]]:
    kind, columns = _kind_and_columns(source, cfg)
    if kind == "image" and cfg.backend != "auto":
        raise InputError(f"--backend {cfg.backend}: applies to text; images run on ONNX Runtime on a CPU "
                         "and on torch on a GPU by themselves (drop --backend)")
    return kind, columns


def _kind_and_columns(source: Source, cfg: EmbedConfig) -> tuple[str, list[str]]:
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


def _scan(source: Source, cfg: EmbedConfig, columns: list[str]) -> tuple[int, ...]:
    """Rows per file, streaming; rejects null/empty and duplicate ids before any work is done.

    Only the id column is read (for derived ids: nothing for Parquet, the first column otherwise).
    """
    seen: dict[str, tuple[int, int]] = {}
    counts: list[int] = []
    if isinstance(source, ImageFolderSource):
        counts = [len(source.images)]
    else:
        probe = [] if cfg.id_column else columns[:1]
        for k in range(len(source.files)):
            if not cfg.id_column and source.fmt == "parquet":
                counts.append(_parquet_rows(source.files[k]))  # the footer knows: no data read
                continue
            n = 0
            for batch in source.rows(probe, cfg.id_column, batch_rows=65536, segments=((k, 0, -1),)):
                if cfg.id_column:
                    for i, value in enumerate(batch.column(ID).to_pylist()):
                        if value in seen:
                            fk, row = seen[value]
                            raise InputError(
                                f"duplicate id {value!r} in --id-column {cfg.id_column}: {source.files[fk]} row {row} "
                                f"and {source.files[k]} row {n + i}; ids must be unique"
                            )
                        seen[value] = (k, n + i)
                n += batch.num_rows
            counts.append(n)
    if sum(counts) == 0:
        raise InputError(f"{getattr(source, 'files', [source.root])[0]}: no rows (only a header, or empty); nothing to embed")
    return tuple(counts)


def _parquet_rows(path: Path) -> int:
    try:
        return pq.ParquetFile(open_input(path)).metadata.num_rows
    except Exception as e:
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None


def _narrow(source: Source, segments) -> dict[str, Any]:
    """The source restricted to the files/images of ``segments``, so a task stays small to ship.

    Ids do not change: they are relative to the unchanged root.
    """
    if isinstance(source, ImageFolderSource):
        (_, lo, hi), = segments
        return {"source": ImageFolderSource(root=source.root, images=source.images[lo:hi]), "segments": ((0, 0, hi - lo),)}
    files = tuple(source.files[k] for k, _, _ in segments)
    return {"source": TableSource(files=files, root=source.root, fmt=source.fmt),
            "segments": tuple((i, lo, hi) for i, (_, lo, hi) in enumerate(segments))}


def _segments(counts: tuple[int, ...], start: int, stop: int) -> tuple[tuple[int, int, int], ...]:
    """The (file index, first row, end row) pieces of global rows ``[start, stop)``."""
    out, base = [], 0
    for k, n in enumerate(counts):
        lo, hi = max(start, base), min(stop, base + n)
        if lo < hi:
            out.append((k, lo - base, hi - base))
        base += n
    return tuple(out)


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
        rmtree(self.parts)
        self.parts.mkdir(parents=True)
        self.save()
        return 0

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, sort_keys=True, indent=1))

    def done(self, index: int) -> bool:
        return str(index) in self.data["finished"]


def embed(input: str | Path, output: str | Path, config: EmbedConfig = EmbedConfig(), overwrite: bool = False,
          executor: Executor | None = None, runtime: Runtime | None = None) -> dict[str, Any]:
    """Embed INPUT into a Parquet file at OUTPUT (see the module docstring). Returns a summary.

    ``runtime`` (the CLI builds one): its device, threads, engine and workers replace the
    config's. ``executor`` decides where shards run (default: ``runtime.executor()``, else
    ``make_executor(config.engine, config.workers)``). Torch's thread count is set for the run
    and restored afterwards.
    """
    if runtime is not None:
        config = replace(config, device=runtime.device, threads=runtime.threads, engine=runtime.engine,
                         workers=runtime.workers)
        executor = executor or runtime.executor()
    before = torch.get_num_threads()
    try:
        return _embed(input, output, config, overwrite, executor)
    finally:
        torch.set_num_threads(before)


def _embed(input: str | Path, output: str | Path, config: EmbedConfig, overwrite: bool,
           executor: Executor | None) -> dict[str, Any]:
    output = as_path(output)
    check_output(output, overwrite, inputs=(input,))
    source = open_source(input)
    modality, columns = _validate(source, config)
    counts = _scan(source, config, columns)
    n_rows = sum(counts)

    threads = config.threads or os.cpu_count() or 1
    config = replace(config, threads=threads)
    torch.set_num_threads(threads)
    if modality == "text":
        # Resolved once, here: shards, the resume hash and provenance name the backend that runs.
        config = replace(config, backend=resolve_backend(config.backend, config.device))
    model_info = get_encoder(modality, config).describe()
    if modality == "image":
        config = replace(config, backend=model_info["backend"])  # the image encoder picks its own
    inputs = source.fingerprint()
    conf = {**config.output_affecting(), "modality": modality}
    chash = config_hash({"config": conf, "inputs": inputs, "model": model_info})

    executor = executor or make_executor(config.engine, config.workers)
    parts = output.with_name(output.name + ".parts")
    manifest = _Manifest(parts, chash, inputs)
    reused = manifest.load_or_reset()
    if reused:
        progress.log(f"resuming: {reused} finished shard(s) reused from {parts}")
    n_shards = -(-n_rows // config.shard_size)
    tasks = [
        ShardTask(config=config, modality=modality, columns=tuple(columns), index=k,
                  **_narrow(source, _segments(counts, k * config.shard_size, min((k + 1) * config.shard_size, n_rows))),
                  rows=min((k + 1) * config.shard_size, n_rows) - k * config.shard_size, parts=str(parts))
        for k in range(n_shards) if not manifest.done(k)
    ]

    try:
        with progress.bar("embed", total=n_rows) as bar:
            bar.advance(sum(f["rows"] for f in manifest.data["finished"].values()))
            # In-process work reports every batch; a shard shipped elsewhere reports when it ends.
            local = getattr(executor, "in_process", False)
            fn = functools.partial(run_shard, on_batch=bar.advance) if local else run_shard
            # closing: an error here (or Ctrl-C) stops the engine's queued tasks and workers now.
            with contextlib.closing(executor.map(fn, tasks)) as results:
                for result in results:
                    manifest.data["finished"][str(result["index"])] = {
                        "file": result["file"], "rows": result["rows"], "skipped": result["skipped"],
                        "dropped": result["dropped"]}
                    manifest.save()
                    if not local:
                        bar.advance(result["rows"])
    except InputError:
        # Bad input will not resume into anything useful: leave no parts behind.
        rmtree(parts)
        raise

    finished = [manifest.data["finished"][k] for k in sorted(manifest.data["finished"], key=int)]
    skipped = [s for f in finished for s in f["skipped"]]
    dropped = sum(f.get("dropped", 0) for f in finished)
    n_out = n_rows - len(skipped) - dropped
    if n_out == 0:
        rmtree(parts)
        why = skipped[0]["error"] if skipped else "no row has a label"
        raise InputError(f"{input}: every row was skipped ({why}); nothing to write")
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
        "dropped_unlabelled": dropped,
    })
    with atomic_path(output) as tmp:
        writer = None
        for f in finished:
            part = pq.read_table(open_input(parts / f["file"]))
            if part.num_rows == 0:
                continue
            if writer is None:
                writer = pq.ParquetWriter(tmp, with_provenance(part, record).schema, **WRITE_OPTIONS)
            writer.write_table(part.replace_schema_metadata(with_provenance(part, record).schema.metadata))
        writer.close()
    rmtree(parts)
    return {"output": str(output), "rows": n_out, "skipped": len(skipped), "dropped_unlabelled": dropped,
            "dimension": model_info["dimension"], "model": model_info["name"], "modality": modality,
            "shards": len(finished), "resumed_shards": reused}
