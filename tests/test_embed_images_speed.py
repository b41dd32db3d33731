"""The fast image path (ONNX Runtime, pixel-bounded forward chunks) against the eager PyTorch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run
from embed_helpers import write_digit_folder

from curate.embed.image import ImageEncoder, forward_rows, load_model, preprocess
from curate.io.parquet import embedding_array, read_provenance, read_table
from curate.io.provenance import file_sha256


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("CURATE_CACHE_DIR", str(d))
    return d


def _digits(root, n_per_class, size):
    folder = write_digit_folder(root, per_class=n_per_class, classes=3)
    paths = sorted(folder.rglob("*.png"))
    return np.stack([preprocess(p, size) for p in paths])


def _eager(batch: np.ndarray) -> np.ndarray:
    """Today's torch path, written out: one eager forward over the whole batch."""
    with torch.inference_mode():
        return load_model().extract_features(torch.from_numpy(batch)).mean(dim=(2, 3)).numpy()


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_features_match_the_eager_model_at_224_px(tmp_path, cache):
    batch = _digits(tmp_path / "d", 7, 224)  # 21 images: more than one forward chunk of 16
    assert len(batch) > forward_rows(224)
    enc = ImageEncoder(224, batch_size=64)
    assert enc.backend == "onnx"
    got, ref = enc.features(batch), _eager(batch)
    assert got.shape == ref.shape == (21, 1280) and got.dtype == np.float32
    assert _cosine(got, ref).min() >= 0.9999
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_batches_give_the_same_features_as_one_at_a_time(tmp_path, cache):
    batch = _digits(tmp_path / "d", 4, 64)
    for backend, tol in (("onnx", 1e-6), ("torch", 1e-5)):  # eager torch picks kernels by batch shape
        enc = ImageEncoder(64, batch_size=64, backend=backend)
        together = enc.features(batch)
        alone = np.concatenate([enc.features(batch[i:i + 1]) for i in range(len(batch))])
        np.testing.assert_allclose(together, alone, rtol=0, atol=tol * np.abs(alone).max(), err_msg=backend)


def test_cli_records_the_backend_and_reuses_the_cached_export(tmp_path, cache):
    root = write_digit_folder(tmp_path / "digits", per_class=2, classes=2)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run("embed", root, "--image-size", "48", "-o", a).exit_code == 0
    exported = list((cache / "image-onnx").glob("*.onnx"))
    assert len(exported) == 1 and "48px" in exported[0].name
    stamp = exported[0].stat().st_mtime_ns
    assert run("embed", root, "--image-size", "48", "-o", b).exit_code == 0
    assert exported[0].stat().st_mtime_ns == stamp  # read, not exported again
    model = read_provenance(a)["embedding_model"]
    assert model["backend"] == "onnx" and model["onnx"]["sha256"] == file_sha256(exported[0])
    np.testing.assert_array_equal(embedding_array(read_table(a).column("embedding")),
                                  embedding_array(read_table(b).column("embedding")))


def test_unwritable_cache_still_embeds(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("CURATE_CACHE_DIR", str(blocker))
    batch = _digits(tmp_path / "d", 1, 40)
    rng = torch.random.get_rng_state()
    got = ImageEncoder(40, backend="onnx").features(batch)
    assert torch.equal(rng, torch.random.get_rng_state())  # loading and exporting leave the caller's RNG alone
    np.testing.assert_allclose(got, _eager(batch), rtol=0, atol=1e-4 * np.abs(got).max())
    assert blocker.read_text() == "a file where the cache directory would go"
