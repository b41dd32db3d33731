"""Image embedding on a CUDA GPU agrees with CPU (GPU kernels change low bits, not the vectors).

Marked ``cuda`` and skipped without a GPU. Library calls only, so it runs with ``--noconftest``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curate.embed import EmbedConfig, embed
from curate.io.parquet import embedding_array, read_provenance, read_table
from embed_helpers import write_digit_folder

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_image_features_on_cuda_match_cpu(tmp_path):
    images = write_digit_folder(tmp_path / "digits", per_class=4, classes=3)
    vecs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.parquet"
        embed(images, out, EmbedConfig(image_size=64, batch_size=5, device=device, threads=2))
        assert read_provenance(out)["config"]["device"] == device
        t = read_table(out)
        vecs[device] = (t.column("id").to_pylist(), embedding_array(t.column("embedding")))
    assert vecs["cpu"][0] == vecs["cuda"][0]
    a, b = vecs["cpu"][1].astype(np.float64), vecs["cuda"][1].astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    # cuDNN may use TF32 for convolutions: vectors agree in direction to well within what changes a score.
    assert cos.min() > 0.999, cos.min()
    np.testing.assert_allclose(b, a, rtol=0.05, atol=0.05)
