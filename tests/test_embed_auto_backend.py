"""`--backend auto`, the default: onnx on the CPU, torch on a GPU, the resolved name recorded; which
files later steps let mix (float32 backends together, int8 only with int8).

The end-to-end refusal of int8 against float32 files is in test_embed_backends.py.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run
from curate.errors import InputError
from curate.io.compat import check_same_embedding, vectors
from curate.io.parquet import embedding_array, read_provenance, read_table
from embed_helpers import write_digit_folder, write_jsonl

INT8 = "dynamic int8 (onnxruntime transformer fusion, then quantize_dynamic: MatMul weights per channel, attention float32)"
BASE = {"name": "all-MiniLM-L6-v2", "sha256": "1" * 64, "dimension": 384, "modality": "text", "normalize": True,
        "pooling": "mean", "max_seq_length": 256}
RECORDS = {"torch": BASE | {"backend": "torch", "quantization": "none"},
           "onnx": BASE | {"backend": "onnx", "quantization": "none", "export_sha256": "2" * 64},
           "openvino": BASE | {"backend": "openvino", "quantization": "none", "export_sha256": "2" * 64},
           "onnx-int8": BASE | {"backend": "onnx-int8", "quantization": INT8, "export_sha256": "3" * 64}}


def _embed_on_a_terminal(args: list, cwd: Path) -> tuple[int, str]:
    """Run ``python -m curate ARGS`` with stderr on a pseudo-terminal 40 columns wide: (exit code, what it showed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "40", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "curate", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=slave, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
    os.close(slave)
    shown = b""
    while True:  # drained as it comes: a full terminal buffer would block the child
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=300), shown.decode(errors="replace")


def test_auto_on_the_cpu_runs_onnx_says_so_once_and_records_it(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    cache = tmp_path / "cache"
    code, shown = _embed_on_a_terminal(["embed", src, "--text-column", "text", "--label-column", "label",
                                        "--device", "cpu", "--backend-cache", cache, "--threads", "1",
                                        "-o", tmp_path / "auto.parquet"], tmp_path)
    assert code == 0, shown
    entry = next((cache / "text").glob("onnx-fp32-*"))
    said = [line.strip("\r") for line in shown.split("\n") if "exporting" in line]
    # One line, unwrapped at 40 columns, naming the model, that it happens once, and where it is kept.
    assert len(said) == 1 and said[0].endswith(f"cached in {entry} (--backend-cache); later runs reuse it"), shown
    assert "all-MiniLM-L6-v2 to ONNX" in said[0] and " once" in said[0]
    prov = read_provenance(tmp_path / "auto.parquet")
    assert prov["embedding_model"]["backend"] == "onnx" == prov["config"]["backend"]  # never "auto"
    assert prov["embedding_model"]["quantization"] == "none"

    # A later run reuses the export (same file, untouched), says nothing on a non-terminal and
    # gives the same bytes. (onnx's vectors against sentence-transformers: test_embed_backends.py.)
    stat = (entry / "model.onnx").stat()
    r = run("embed", src, "--text-column", "text", "--label-column", "label", "--device", "cpu",
            "--backend-cache", cache, "--threads", "1", "-o", tmp_path / "again.parquet")
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    again = (entry / "model.onnx").stat()
    assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert [p.name for p in (cache / "text").iterdir()] == [entry.name]
    np.testing.assert_array_equal(embedding_array(read_table(tmp_path / "again.parquet").column("embedding")),
                                  embedding_array(read_table(tmp_path / "auto.parquet").column("embedding")))


def test_a_pool_embedded_by_the_old_default_scores_with_a_model_from_the_new_one(tmp_path):
    """The upgrade path: holdout embedded by torch (the old default), pool by auto (onnx): they mix."""
    src = write_jsonl(tmp_path / "in.jsonl")
    for backend in ("torch", "auto"):
        r = run("embed", src, "--text-column", "text", "--label-column", "label", "--device", "cpu",
                "--backend", backend, "--threads", "1", "-o", tmp_path / f"{backend}.parquet")
        assert r.exit_code == 0, r.stderr
    assert read_provenance(tmp_path / "auto.parquet")["embedding_model"]["backend"] == "onnx"
    r = run("il", "train", tmp_path / "torch.parquet", "-o", tmp_path / "il", "--epochs", "2", "--threads", "1")
    assert r.exit_code == 0, r.stderr
    r = run("score", tmp_path / "auto.parquet", "--il", tmp_path / "il", "-m", "rho", "-K", "2", "-t", "2",
            "--threads", "1", "-o", tmp_path / "s.parquet")
    assert r.exit_code == 0, r.stderr
    assert read_table(tmp_path / "s.parquet").num_rows == len(read_table(tmp_path / "auto.parquet"))


def test_auto_without_onnxruntime_runs_torch(tmp_path):
    """A CPU without onnxruntime installed (the package made unimportable in a child, as when it is
    absent): auto runs torch, records it, and names nothing about onnx on stderr."""
    src = write_jsonl(tmp_path / "in.jsonl")
    out = tmp_path / "t.parquet"
    child = ("import sys; sys.modules['onnxruntime'] = None; from curate.cli import main; "
             f"sys.argv = ['curate', 'embed', {str(src)!r}, '--text-column', 'text', '--device', 'cpu', "
             f"'--threads', '1', '--backend-cache', {str(tmp_path / 'cache')!r}, '-o', {str(out)!r}]; main()")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    prov = read_provenance(out)
    assert prov["embedding_model"]["backend"] == "torch" == prov["config"]["backend"]
    assert "onnx" not in r.stderr.lower()
    assert not (tmp_path / "cache").exists()


def test_images_record_the_backend_their_encoder_picked(tmp_path):
    folder = write_digit_folder(tmp_path / "digits", per_class=1, classes=2)
    r = run("embed", folder, "--image-size", "32", "--device", "cpu", "--threads", "1", "-o", tmp_path / "i.parquet")
    assert r.exit_code == 0, r.stderr
    prov = read_provenance(tmp_path / "i.parquet")
    assert prov["embedding_model"]["backend"] == "onnx" == prov["config"]["backend"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_a_gpu_runs_torch(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl")
    r = run("embed", src, "--text-column", "text", "--device", "cuda", "-o", tmp_path / "gpu.parquet")
    assert r.exit_code == 0, r.stderr
    prov = read_provenance(tmp_path / "gpu.parquet")
    assert prov["embedding_model"]["backend"] == "torch" == prov["config"]["backend"]
    assert prov["config"]["device"] == "cuda"


@pytest.mark.parametrize("a", ["torch", "onnx", "openvino"])
@pytest.mark.parametrize("b", ["torch", "onnx", "openvino"])
def test_float32_backends_mix(a, b):
    check_same_embedding(RECORDS[a], RECORDS[b], "A.parquet", "B.parquet", "hint")


@pytest.mark.parametrize("fp32", ["torch", "onnx", "openvino"])
def test_int8_never_mixes_with_float32(fp32):
    for a, b, first, second in ((fp32, "onnx-int8", f"'{fp32}'", "'onnx-int8'"), ("onnx-int8", fp32, "'onnx-int8'", f"'{fp32}'")):
        with pytest.raises(InputError) as e:
            check_same_embedding(RECORDS[a], RECORDS[b], "A.parquet", "B.parquet", "re-run `curate embed` on one of them")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("A.parquet and B.parquet were embedded differently")
        assert f"embedding_model.backend is {first} vs {second}" in msg and "which do not mix" in msg
        assert msg.endswith("re-run `curate embed` on one of them")
    check_same_embedding(RECORDS["onnx-int8"], RECORDS["onnx-int8"], "A", "B", "hint")


def test_another_quantisation_is_refused_and_records_without_a_backend_are_not_compared():
    other = RECORDS["onnx-int8"] | {"quantization": "static int8"}
    with pytest.raises(InputError, match="embedding_model.quantization is 'dynamic int8 .*' vs 'static int8'; hint"):
        check_same_embedding(RECORDS["onnx-int8"], other, "A", "B", "hint")
    # Files from before backends were recorded: nothing to compare, as for any absent field.
    check_same_embedding(BASE, RECORDS["onnx-int8"], "A", "B", "hint")
    # Image records name the backend only (onnx on a CPU, torch on a GPU): both float32.
    image = {"modality": "image", "backend": "onnx"}
    assert vectors(image) == vectors(image | {"backend": "torch"}) == vectors(RECORDS["onnx"]) == "float32"
    assert vectors(BASE) is None and vectors(RECORDS["onnx-int8"]) == INT8
