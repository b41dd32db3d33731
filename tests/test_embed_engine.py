"""Shard tasks an engine can ship: they pickle, a process pool gives the same bytes, batches match."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq

from conftest import run
from curate.embed import EmbedConfig, embed
from curate.embed.executor import ProcessExecutor
from curate.embed.image import ImageEncoder, preprocess
from curate.embed.shard import ShardTask, run_shard
from curate.io.parquet import embedding_array, read_provenance
from curate.io.sources import open_source
from embed_helpers import write_digit_folder, write_jsonl


def test_shard_task_pickles_and_runs_after_the_round_trip(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", 5)
    parts = tmp_path / "parts"
    parts.mkdir()
    task = ShardTask(config=EmbedConfig(text_column="text", id_column="id", threads=1), source=open_source(src),
                     modality="text", columns=("text",), index=3, segments=((0, 1, 4),), rows=3, parts=str(parts))
    back = pickle.loads(pickle.dumps(task))
    assert back == task
    result = run_shard(back)
    assert result["file"] == "part-00003.parquet" and result["rows"] == 3
    # The task read only its own rows: 1, 2 and 3 of the file.
    assert pq.read_table(parts / result["file"]).column("id").to_pylist() == ["doc-001", "doc-002", "doc-003"]


def test_process_engine_gives_the_same_bytes_as_in_process(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl")
    cfg = EmbedConfig(text_column="text", label_column="label", id_column="id", shard_size=4, batch_size=3, threads=1)
    embed(src, tmp_path / "local.parquet", cfg)
    embed(src, tmp_path / "proc.parquet", replace(cfg, engine="process", workers=2))
    assert (tmp_path / "local.parquet").read_bytes() == (tmp_path / "proc.parquet").read_bytes()


def test_process_executor_keeps_task_order():
    assert list(ProcessExecutor(2).map(abs, [-3, 1, -2, 5, -7])) == [3, 1, 2, 5, 7]


def test_image_batches_give_the_same_features_as_one_at_a_time(tmp_path):
    root = write_digit_folder(tmp_path / "digits", per_class=3, classes=2)
    out = tmp_path / "img.parquet"
    r = run("embed", root, "--image-size", "32", "--batch-size", "4", "--threads", "1", "-o", out)
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    enc = ImageEncoder(image_size=32)
    paths = sorted(root.rglob("*.png"))
    assert t.column("id").to_pylist() == [p.relative_to(root).as_posix() for p in paths]
    single = np.concatenate([enc.features(preprocess(p, 32)[None]) for p in paths])
    np.testing.assert_allclose(embedding_array(t.column("embedding")), single, atol=1e-5)


def test_provenance_names_every_field_that_changes_vectors(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", 3)
    out = tmp_path / "t.parquet"
    assert run("embed", src, "--text-column", "text", "-o", out).exit_code == 0
    model = read_provenance(out)["embedding_model"]
    for key in ("name", "path", "sha256", "dimension", "modality", "normalize", "pooling", "image_size",
                "preprocessing", "max_seq_length", "backend"):
        assert key in model, key
    import torch

    # --backend auto: onnx on the CPU, torch on a GPU; the backend that ran is recorded, never "auto".
    assert model["backend"] == ("torch" if torch.cuda.is_available() else "onnx")
    assert model["pooling"] == "mean" and model["max_seq_length"] == 256
    # --device auto resolves once, at the CLI edge, and the device is recorded (GPU kernels change low bits).

    assert read_provenance(out)["config"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_drop_unlabelled_skips_null_and_nan_labels_and_counts_them(tmp_path):
    import math

    import pyarrow as pa

    pq.write_table(pa.table({"text": ["a b", "c d", "e f", "g h"], "y": [1.0, math.nan, None, 2.0]}), tmp_path / "l.parquet")
    out = tmp_path / "o.parquet"
    r = run("embed", tmp_path / "l.parquet", "--text-column", "text", "--label-column", "y", "--drop-unlabelled", "-o", out)
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    assert t.column("id").to_pylist() == ["l.parquet:0", "l.parquet:3"]
    assert t.column("label").to_pylist() == [1.0, 2.0] and t.schema.field("label").type == pa.float64()
    assert read_provenance(out)["dropped_unlabelled"] == 2


def test_progress_moves_per_batch_not_per_shard(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", 7)
    parts = tmp_path / "parts"
    parts.mkdir()
    task = ShardTask(config=EmbedConfig(text_column="text", batch_size=2, threads=1), source=open_source(src),
                     modality="text", columns=("text",), index=0, segments=((0, 0, 7),), rows=7, parts=str(parts))
    steps: list[int] = []
    run_shard(task, on_batch=steps.append)
    assert [s for s in steps if s] == [2, 2, 2, 1]
