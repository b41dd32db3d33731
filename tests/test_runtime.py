"""Runtime: device resolution on CPU, process state left as found, the per-row pass shipped to other
processes, and (where a GPU exists) the same scores on CUDA as on CPU within float tolerance."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import assert_fails, run
from curate.errors import InputError
from curate.io.parquet import read_provenance
from curate.models.heads import Ensemble, HeadSpec
from curate.runtime import Runtime, resolve_device
from curate.score import ScoreConfig, score
from curate.scores.snapshot import RowTask, score_rows
from score_helpers import clusters, write_pool


def test_device_resolution_on_cpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(" CPU ") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    for bad in ("tpu", "gpu", "cuda-0"):
        with pytest.raises(InputError, match="expected auto, cpu, cuda, cuda:N or mps"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_an_input_error():
    with pytest.raises(InputError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="no CUDA GPU is visible"):
        resolve_device("cuda:0")


def test_runtime_rejects_bad_threads_and_chunk():
    for kw, fragment in (({"threads": 0}, "--threads 0"), ({"chunk": 0}, "--chunk 0"), ({"threads": 10**6}, "--threads")):
        with pytest.raises(InputError, match=fragment):
            Runtime(**kw)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    X, y = clusters(50, d=6, classes=3, seed=1, spread=1.5)
    return write_pool(d / "pool.parquet", X, y)


def test_score_leaves_threads_and_rng_as_found_and_records_the_runtime(pool, tmp_path):
    before_threads = torch.get_num_threads()
    torch.manual_seed(1234)
    before_rng = torch.random.get_rng_state().clone()
    cfg = ScoreConfig(methods=("el2n", "grand"), seeds=2, spec=HeadSpec(hidden=(8,), dropout=0.2))
    score(pool, tmp_path / "o.parquet", cfg, runtime=Runtime(device="cpu", threads=1))
    assert torch.get_num_threads() == before_threads
    assert torch.equal(torch.random.get_rng_state(), before_rng)
    rec = read_provenance(tmp_path / "o.parquet")["scores"]["el2n"]
    assert rec["runtime"]["device"] == "cpu" and rec["runtime"]["threads"] == 1 and rec["torch_threads"] == 1


def test_chunk_size_changes_at_most_the_low_bits(pool, tmp_path):
    # Batched matmuls of another row count may sum in another order: equal within float32 rounding.
    cols = []
    for chunk in (7, 50):
        out = tmp_path / f"c{chunk}.parquet"
        r = run("score", pool, "-m", "el2n", "-m", "grand", "-K", 2, "-t", 1, "--hidden", 8, "--chunk", chunk,
                "--device", "cpu", "-o", out)
        assert r.exit_code == 0, r.stderr
        t = pq.read_table(out)
        cols.append([t.column(c).to_numpy() for c in ("el2n", "grand")])
    for a, b in zip(*cols):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _task(n=40, d=5, classes=3, grand=True):
    X, y = clusters(n, d=d, classes=classes, seed=2)
    spec = HeadSpec(arch="mlp", in_dim=d, n_classes=classes, hidden=(7,))
    ens = Ensemble(spec, [11, 12, 13])
    state = {k: v.detach().clone() for k, v in ens.state_dict().items()}
    return RowTask(spec.to_dict(), (11, 12, 13), state, state if grand else None, X, y.astype(np.int64))


def test_row_task_survives_a_process_pool_with_identical_bytes():
    tasks = [_task(), _task(n=9, grand=False)]
    here = [score_rows(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
        there = list(ex.map(score_rows, tasks))
    for a, b in zip(here, there):
        assert sorted(a) == sorted(b)
        for k in a:
            assert a[k].tobytes() == b[k].tobytes(), k
    assert "grand" not in here[1] and here[0]["el2n"].shape == (3, 40)


def test_bad_device_and_threads_on_the_command_line(pool, tmp_path):
    out = tmp_path / "o.parquet"
    assert_fails(["score", pool, "-m", "el2n", "--device", "tpu", "-o", out], "--device tpu", root=tmp_path)
    assert_fails(["score", pool, "-m", "el2n", "--threads", 0, "-o", out], "--threads 0", root=tmp_path)


def test_non_finite_scores_name_the_first_bad_row():
    from curate.scores.base import finite

    ids = ["a", "b", "c", "d"]
    per_row = np.array([[0.1, 0.2], [0.3, 0.4], [np.nan, 0.5], [np.inf, 0.0]])
    with pytest.raises(InputError, match=r"snapshot el2n: non-finite value at row 2 \(id 'c'\)"):
        finite("snapshot el2n", per_row, ids)
    with pytest.raises(InputError, match=r"row 1 \(id 'b'\)"):
        finite("il_loss", np.array([0.0, -np.inf, 1.0, 2.0]), ids)
    ok = np.array([0.0, 1.0, 2.0, 3.0])
    assert finite("x", ok, ids) is ok


def test_check_same_embedding_compares_what_changes_vectors_only():
    from curate.io.compat import check_same_embedding

    a = {"name": "m", "sha256": "1" * 64, "dimension": 4, "normalize": True, "path": "/a", "batch_size": 8}
    check_same_embedding(a, a | {"path": "/elsewhere", "batch_size": 64}, "A", "B", "hint")
    check_same_embedding(a, a | {"name": "same weights, other name"}, "A", "B", "hint")
    check_same_embedding(a, None, "A", "B", "hint")
    for field, other in (("max_seq_length", 128), ("pooling", "cls"), ("modality", "image"), ("preprocessing", "x")):
        check_same_embedding(a, a | {field: other}, "A", "B", "hint")  # absent on one side: not compared
        with pytest.raises(InputError, match=f"A and B were embedded differently: embedding_model.{field} is"):
            check_same_embedding(a | {field: "v1"}, a | {field: other}, "A", "B", "re-run it")
    with pytest.raises(InputError, match="embedding_model.dimension is 4 vs 8; re-run it"):
        check_same_embedding(a, a | {"dimension": 8}, "A", "B", "re-run it")
