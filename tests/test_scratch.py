"""A run's scratch (S3 staging folders, the spilled embedding matrix, score column files): a kill -9
leftover is removed by the next run that makes scratch, and nothing else is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import snapshot
from curate.io import scratch
from curate.io.columns import DiskColumn
from score_helpers import clusters, write_pool


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: no process has this id now (reuse within the test is not plausible)


def test_only_stale_curate_scratch_is_removed(tmp_path):
    dead = _dead_pid()
    stale = [tmp_path / f"curate-upload-{dead}-k2x_9a", tmp_path / f"curate-embeddings-{dead}-a1b2c3"]
    (stale[0] / "sub").mkdir(parents=True)
    (stale[0] / "sub" / "0-out.parquet").write_bytes(b"half an upload")
    stale[1].mkdir()
    (stale[1] / "embeddings.f32").write_bytes(b"\0" * 64)
    stale_file = tmp_path / f"curate-column-{dead}-zz_09q.bin"
    stale_file.write_bytes(b"\0" * 8)
    live = tmp_path / f"curate-upload-{os.getppid()}-abc123"  # the pytest runner's parent: alive
    live.mkdir()
    (live / "x").write_text("in use")
    (tmp_path / f"curate-column-{os.getppid()}-abc123.bin").write_bytes(b"live")
    keep_dirs = [
        tmp_path / "curate-upload-k2x9a1",  # no pid: an older curate's name, or not ours to judge
        tmp_path / "curate-embeddings-k2x9a1",
        tmp_path / f"other-upload-{dead}-k2x9a1",
        tmp_path / f"curate-upload-{dead}-K2X.tmp",  # not a name curate makes
        tmp_path / f"curate-column-{dead}-dir001.bin",  # a folder where curate makes a file
        tmp_path / f"curate-embeddings-{dead}-abc.bin",  # a folder kind with a file's suffix
    ]
    for d in keep_dirs:
        d.mkdir()
    (tmp_path / f"curate-upload-{dead}-file01").write_text("a file, not a folder")
    (tmp_path / f"curate-embeddings-{dead}-file02").write_text("a file, not a folder")
    (tmp_path / f"curate-column-{dead}-nobin1").write_text("a file without the suffix")
    (tmp_path / f"curate-upload-{dead}-link01").symlink_to(live)
    (tmp_path / f"curate-column-{dead}-link02.bin").symlink_to(tmp_path / f"curate-column-{os.getppid()}-abc123.bin")
    before = snapshot(tmp_path)

    assert sorted(scratch.clean_stale(tmp_path)) == sorted([*stale, stale_file])

    gone = {p.name for p in [*stale, stale_file]}
    expected = {k: v for k, v in before.items() if k.split("/")[0] not in gone}
    assert snapshot(tmp_path) == expected
    assert (live / "x").read_text() == "in use"


def test_new_scratch_names_this_process_and_clears_stale_ones(tmp_path):
    stale = tmp_path / f"curate-upload-{_dead_pid()}-abc123"
    stale.mkdir()
    made = scratch.make_dir("upload", tmp_path)
    assert made.is_dir() and made.name.startswith(f"curate-upload-{os.getpid()}-")
    assert not stale.exists()
    stale_col = tmp_path / f"curate-column-{_dead_pid()}-abc123.bin"
    stale_col.write_bytes(b"x")
    col = DiskColumn(np.float64, dir=tmp_path)
    assert col.path.name.startswith(f"curate-column-{os.getpid()}-") and col.path.suffix == ".bin"
    assert not stale_col.exists()
    assert scratch.clean_stale(tmp_path) == []  # our own scratch is never stale while we run
    assert made.is_dir() and col.path.exists()
    col.close()
    assert not col.path.exists()


def test_a_killed_score_leaves_scratch_that_the_next_run_removes(tmp_path):
    """kill -9 in the middle of scoring (the out-of-memory killer's way): the spilled matrix is left
    in $TMPDIR; the next score, with the same $TMPDIR, removes it before making its own, and its own."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    X, y = clusters(20000, 16)
    pool = write_pool(tmp_path / "pool.parquet", X, y)
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def score(epochs: int, out: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "curate", "score", str(pool), "-m", "el2n", "-K", "2",
                                 "--epochs", str(epochs), "--threads", "1", "-o", str(tmp_path / out)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    proc = score(500, "s.parquet")
    deadline = time.time() + 120
    while not list(tmpdir.glob(f"curate-embeddings-{proc.pid}-*/embeddings.f32")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the matrix written, training under way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(tmpdir.glob(f"curate-embeddings-{proc.pid}-*")), "the killed run left no scratch: not killed mid-run"

    again = score(1, "s2.parquet")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert list(tmpdir.glob("curate-*")) == []  # torch may keep caches of its own there
