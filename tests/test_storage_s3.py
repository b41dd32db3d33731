"""Inputs and outputs on S3: a moto server on 127.0.0.1 started by the session, never a real cloud.

The pipeline run on s3:// paths must give what the same run gives on local paths (rows, score
bytes, pruned records), a failed write must leave no final object and no temporary, and every
storage error must be one ``curate: error:`` line naming the URI.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import socket
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import assert_fails, run
from embed_helpers import write_jsonl
from score_helpers import clusters, write_pool

from curate.io.atomic import atomic_path, check_output
from curate.io.fs import RemotePath, as_path

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A fresh bucket; ``url(key)``, ``put``, ``get``, ``keys()``."""
    for k, v in {**CREDS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = f"curate-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return SimpleNamespace(
        bucket=bucket,
        url=lambda key: f"s3://{bucket}/{key}",
        put=lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data),
        get=lambda key: client.get_object(Bucket=bucket, Key=key)["Body"].read(),
        keys=lambda: sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])),
    )


def _footer(table: pa.Table) -> dict:
    return json.loads(table.schema.metadata[b"curate"])


def _without_paths(rec: dict) -> dict:
    """The provenance record less what names where the files were (and the test's own argv)."""
    rec = json.loads(json.dumps(rec))
    for f in rec.get("inputs", []):
        f.pop("path")
    rec.get("source", {}).pop("root", None)
    for step in [rec, *rec.get("history", []), rec.get("prune", {})]:
        step.pop("command", None)
    for sc in rec.get("scores", {}).values():
        if isinstance(sc, dict):
            sc.pop("pool", None)
    rec.get("prune", {}).pop("scored", None)
    return rec


def _table(s3, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get(key)))


def _leftovers(s3) -> list[str]:
    return [k for k in s3.keys() if ".curate-tmp-" in k or ".parts/" in k]


def test_embed_score_prune_on_s3_equal_local_runs(tmp_path, s3):
    local_in = write_jsonl(tmp_path / "train.jsonl", with_id=False)
    s3.put("in/train.jsonl", local_in.read_bytes())
    embed = ["--text-column", "text", "--label-column", "label", "--shard-size", "5", "--threads", "1", "--json"]

    r = run("embed", local_in, "-o", tmp_path / "emb.parquet", *embed)
    assert r.exit_code == 0, r.stderr
    r = run("embed", s3.url("in/train.jsonl"), "-o", s3.url("out/emb.parquet"), *embed)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["output"] == s3.url("out/emb.parquet")
    local, remote = pq.read_table(tmp_path / "emb.parquet"), _table(s3, "out/emb.parquet")
    assert remote.num_rows == 14
    assert remote.replace_schema_metadata().equals(local.replace_schema_metadata())
    rec = _footer(remote)
    data = local_in.read_bytes()
    assert rec["inputs"] == [{"path": s3.url("in/train.jsonl"), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    assert rec["source"]["root"] == s3.url("in")
    assert _without_paths(rec) == _without_paths(_footer(local))

    score = ["-m", "el2n", "--seeds", "2", "--epochs", "1", "--threads", "1", "--device", "cpu"]
    assert run("score", tmp_path / "emb.parquet", "-o", tmp_path / "scored.parquet", *score).exit_code == 0
    r = run("score", s3.url("out/emb.parquet"), "-o", s3.url("out/scored.parquet"), *score)
    assert r.exit_code == 0, r.stderr
    local, remote = pq.read_table(tmp_path / "scored.parquet"), _table(s3, "out/scored.parquet")
    # Score bytes equal: the same float64 values, bit for bit.
    assert remote.column("el2n").to_numpy().tobytes() == local.column("el2n").to_numpy().tobytes()
    assert remote.replace_schema_metadata().equals(local.replace_schema_metadata())
    assert _without_paths(_footer(remote)) == _without_paths(_footer(local))

    prune = ["--keep", "el2n <= q0.5"]
    r = run("prune", tmp_path / "scored.parquet", *prune, "--source", local_in, "-o", tmp_path / "kept.jsonl",
            "--dropped", tmp_path / "dropped.csv")
    assert r.exit_code == 0, r.stderr
    r = run("prune", s3.url("out/scored.parquet"), *prune, "--source", s3.url("in/train.jsonl"),
            "-o", s3.url("out/kept.jsonl"), "--dropped", s3.url("out/dropped.csv"))
    assert r.exit_code == 0, r.stderr
    assert s3.get("out/kept.jsonl") == (tmp_path / "kept.jsonl").read_bytes()
    assert s3.get("out/dropped.csv") == (tmp_path / "dropped.csv").read_bytes()
    kept = (tmp_path / "kept.jsonl").read_bytes().splitlines()
    assert 0 < len(kept) < 14 and all(line in data.splitlines() for line in kept)

    # The kept records are curate's (a sidecar object holds their hash): --overwrite may replace them.
    side = json.loads(s3.get("out/.kept.jsonl.curate"))
    assert side["sha256"] == [hashlib.sha256(s3.get("out/kept.jsonl")).hexdigest()]
    r = run("prune", s3.url("out/scored.parquet"), *prune, "--source", s3.url("in/train.jsonl"),
            "-o", s3.url("out/kept.jsonl"), "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert _leftovers(s3) == []


def test_failed_embed_leaves_no_final_object_and_no_temporary(tmp_path, s3):
    rows = [{"text": t, "label": "a"} for t in ["one", "two", "three", "four", "five", "six", "", "eight"]]
    s3.put("in/bad.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    # Shard 0 (rows 0-4) is written to the parts prefix before shard 1 meets the empty text.
    assert_fails(["embed", s3.url("in/bad.jsonl"), "--text-column", "text", "-o", s3.url("out/emb.parquet"),
                  "--shard-size", "5", "--threads", "1"], s3.url("in/bad.jsonl"), "row 6", "is empty")
    assert not any(k.startswith("out/emb.parquet") for k in s3.keys())
    assert _leftovers(s3) == []


def test_failed_write_keeps_the_old_object_and_leaves_no_temporary(s3):
    X, y = clusters(12, d=4)
    url = s3.url("out/pool.parquet")
    write_pool(url, X, y)
    before = s3.get("out/pool.parquet")
    with pytest.raises(RuntimeError):
        with atomic_path(url) as tmp:
            with pq.ParquetWriter(tmp, pa.schema([("x", pa.int64())])) as w:
                w.write_table(pa.table({"x": [1, 2, 3]}))
            raise RuntimeError("killed mid-way")
    assert s3.get("out/pool.parquet") == before
    assert _leftovers(s3) == []


def test_leftover_temporaries_are_removed_by_the_next_run(s3):
    s3.put("out/.curate-tmp-pool.parquet/0123abcd", b"PAR1 half an upload")
    check_output(s3.url("out/pool.parquet"), overwrite=False)
    assert s3.keys() == [k for k in s3.keys() if ".curate-tmp-" not in k]
    assert _leftovers(s3) == []


def test_overwrite_only_replaces_curates_objects(tmp_path, s3):
    pool = write_pool(tmp_path / "pool.parquet", *clusters(12, d=4))
    s3.put("out/theirs.parquet", b"someone else's file")
    args = ["score", pool, "-m", "el2n", "--seeds", "1", "--epochs", "1", "--device", "cpu"]
    assert_fails(args + ["-o", s3.url("out/theirs.parquet")], s3.url("out/theirs.parquet"), "already exists")
    assert_fails(args + ["-o", s3.url("out/theirs.parquet"), "--overwrite"], "not written by curate")
    assert s3.get("out/theirs.parquet") == b"someone else's file"
    assert run(*args, "-o", s3.url("out/ours.parquet")).exit_code == 0
    assert run(*args, "-o", s3.url("out/ours.parquet"), "--overwrite").exit_code == 0
    # In place on S3, as on disk: the pool's columns are kept.
    assert run(*args, "-o", s3.url("out/ours.parquet"), "--overwrite").exit_code == 0
    assert _table(s3, "out/ours.parquet").num_rows == 12


def test_missing_bucket_or_key_is_one_error_line_naming_the_uri(tmp_path, s3):
    pool = write_pool(tmp_path / "pool.parquet", *clusters(12, d=4))
    score = ["-m", "el2n", "--seeds", "1", "--epochs", "1", "--device", "cpu"]
    assert_fails(["embed", "s3://no-such-bucket-here/in.jsonl", "--text-column", "text", "-o", tmp_path / "e.parquet"],
                 "s3://no-such-bucket-here/in.jsonl", "bucket", "does not exist", out=tmp_path / "e.parquet")
    assert_fails(["embed", s3.url("in/missing.jsonl"), "--text-column", "text", "-o", tmp_path / "e.parquet"],
                 s3.url("in/missing.jsonl"), "no such object", out=tmp_path / "e.parquet")
    assert_fails(["score", s3.url("missing.parquet"), "-o", tmp_path / "s.parquet", *score],
                 s3.url("missing.parquet"), "no such object", out=tmp_path / "s.parquet")
    assert_fails(["score", pool, "-o", "s3://no-such-bucket-here/s.parquet", *score],
                 "s3://no-such-bucket-here/s.parquet", "bucket 'no-such-bucket-here' does not exist")
    assert_fails(["prune", s3.url("missing.parquet"), "--keep", "el2n > 0", "-o", tmp_path / "k.parquet"],
                 s3.url("missing.parquet"), out=tmp_path / "k.parquet")


def test_unreachable_endpoint_is_one_error_line(tmp_path, s3, monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    assert_fails(["score", s3.url("pool.parquet"), "-o", tmp_path / "s.parquet", "-m", "el2n"],
                 s3.url("pool.parquet"), "cannot reach the storage endpoint", out=tmp_path / "s.parquet")


def test_remote_path_names_like_pathlib():
    p = RemotePath("s3://bkt/a/b/c.parquet")
    assert (p.name, p.suffix, p.stem, p.bucket, p.key) == ("c.parquet", ".parquet", "c", "bkt", "a/b/c.parquet")
    assert p.parent == RemotePath("s3://bkt/a/b/") and p.parent.parent.parent == RemotePath("s3://bkt")
    assert p.with_name("d.csv").uri == "s3://bkt/a/b/d.csv" and (p.parent / "x/y").uri == "s3://bkt/a/b/x/y"
    assert p.relative_to(RemotePath("s3://bkt/a")).as_posix() == "b/c.parquet"
    assert RemotePath("s3://bkt/a") in p.parents and p.staging().uri == "s3://bkt/a/b/.curate-tmp-c.parquet"
    assert as_path("local/x.parquet") == Path("local/x.parquet") and as_path("file:///tmp/x") == Path("/tmp/x")
    assert isinstance(as_path("s3://bkt/k"), RemotePath) and as_path("s3://bkt/k") == RemotePath("S3://bkt/k")
    with pytest.raises(ValueError):
        p.relative_to(RemotePath("s3://other"))
    assert np.array_equal(np.array(sorted([RemotePath("s3://b/2"), RemotePath("s3://b/1")]), dtype=object),
                          np.array([RemotePath("s3://b/1"), RemotePath("s3://b/2")], dtype=object))


def _ids(source) -> list[str]:
    from curate.io.sources import open_source

    return [i for b in open_source(source).rows([], None) for i in b.column("id").to_pylist()]


def test_prefix_glob_and_csv_sources_on_s3_read_as_their_local_copies(tmp_path, s3):
    from curate.io.sources import open_source

    rows = [f'{i},"line one\r\nline, ""two"" {i}"' if i % 3 == 0 else f"{i},plain {i}" for i in range(9)]
    files = {
        "data/a.csv": ("\ufeffn,text\r\n" + "".join(r + "\r\n" + ("\r\n" if i == 4 else "") for i, r in enumerate(rows))).encode(),
        "data/sub/b.csv": b"n,text\n100,x\n101,y\n",
        "data/notes.txt": b"not a table",
    }
    for key, data in files.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data)
        s3.put(key, data)
    # A folder and a glob give the ids and fingerprints (less the paths) of the same local layout.
    for local, remote in [(tmp_path / "data", s3.url("data")), (f"{tmp_path}/data/**/*.csv", s3.url("data/**/*.csv"))]:
        assert _ids(remote) == _ids(local) == [f"a.csv:{i}" for i in range(9)] + ["sub/b.csv:0", "sub/b.csv:1"]
        strip = lambda fp: [{k: v for k, v in f.items() if k != "path"} for f in fp]  # noqa: E731
        assert strip(open_source(remote).fingerprint()) == strip(open_source(local).fingerprint())
    assert _ids(s3.url("data/*.csv")) == [f"a.csv:{i}" for i in range(9)]

    # prune --source on an S3 CSV writes the very bytes the local run writes (BOM, CRLF, quoted newlines).
    from test_prune_sources import scored_for

    for name, src, out in [("local", tmp_path / "data/a.csv", tmp_path / "kept.csv"),
                           ("s3", s3.url("data/a.csv"), s3.url("out/kept.csv"))]:
        scored = scored_for(src, [f"a.csv:{i}" for i in range(9)], tmp_path / f"{name}.parquet")
        r = run("prune", scored, "--keep", "s > 0", "--source", src, "-o", out)
        assert r.exit_code == 0, r.stderr
    outs = (tmp_path / "kept.csv").read_bytes(), s3.get("out/kept.csv")
    assert outs[0] == outs[1] and outs[0].startswith(b"\xef\xbb\xbfn,text\r\n") and b'"line one\r\nline' in outs[0]
    scored = scored_for(s3.url("data"), _ids(s3.url("data")), tmp_path / "dir.parquet")
    assert_fails(["prune", scored, "--keep", "s > 0", "--source", s3.url("data"), "-o", s3.url("out/dir")],
                 "-o " + s3.url("out/dir"), "folder outputs on object storage are not supported")
    assert not any(k.startswith("out/dir") for k in s3.keys())


def test_gio_target_on_s3_gives_the_local_scores(tmp_path, s3):
    X, y = clusters(30, d=4)
    pool = write_pool(tmp_path / "pool.parquet", X, y)
    write_pool(tmp_path / "target.parquet", X[:8], y[:8], ids=[f"t{i}" for i in range(8)])
    s3.put("target.parquet", (tmp_path / "target.parquet").read_bytes())
    gio = ["-m", "gio", "--budget", "5", "--device", "cpu", "--threads", "1"]
    assert run("score", pool, "--target", tmp_path / "target.parquet", "-o", tmp_path / "l.parquet", *gio).exit_code == 0
    r = run("score", pool, "--target", s3.url("target.parquet"), "-o", s3.url("r.parquet"), *gio)
    assert r.exit_code == 0, r.stderr
    local, remote = pq.read_table(tmp_path / "l.parquet"), _table(s3, "r.parquet")
    assert remote.replace_schema_metadata().equals(local.replace_schema_metadata())
    target = _footer(remote)["scores"]["gio_selected"]["target"]
    assert target["path"] == s3.url("target.parquet")
    assert target["sha256"] == hashlib.sha256((tmp_path / "target.parquet").read_bytes()).hexdigest()


def test_refused_credentials_are_one_error_line(tmp_path, s3):
    from moto.core.authorization import enable_iam_authentication

    pool = write_pool(tmp_path / "pool.parquet", *clusters(12, d=4))
    s3.put("pool.parquet", pool.read_bytes())
    with enable_iam_authentication():  # the server now checks keys: "testing" is no IAM user's
        assert_fails(["score", s3.url("pool.parquet"), "-o", tmp_path / "s.parquet", "-m", "el2n"],
                     s3.url("pool.parquet"), "access denied", "AWS_ACCESS_KEY_ID", out=tmp_path / "s.parquet")
        assert_fails(["score", pool, "-o", s3.url("s.parquet"), "-m", "el2n"], s3.url("s.parquet"), "access denied")
