"""Local staging folders of object-store outputs: a kill -9 leftover is removed by the next run, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import snapshot

from curate.io import staging


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: no process has this id now (reuse within the test is not plausible)


def test_only_stale_curate_staging_folders_are_removed(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f"curate-upload-{dead}-k2x_9a"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "0-out.parquet").write_bytes(b"half an upload")
    live = tmp_path / f"curate-upload-{os.getppid()}-abc123"  # the pytest runner's parent: alive
    live.mkdir()
    (live / "x").write_text("in use")
    keep = [
        live,
        tmp_path / "curate-upload-k2x9a1",  # no pid: an older curate's name, or not ours to judge
        tmp_path / f"other-upload-{dead}-k2x9a1",
        tmp_path / f"curate-upload-{dead}-K2X.tmp",  # not a name curate makes
    ]
    for d in keep[1:]:
        d.mkdir()
    (tmp_path / f"curate-upload-{dead}-file01").write_text("a file, not a folder")
    (tmp_path / f"curate-upload-{dead}-link01").symlink_to(live)
    before = snapshot(tmp_path)

    assert staging.clean_stale(tmp_path) == [stale]

    expected = {k: v for k, v in before.items() if not k.startswith(stale.name)}
    assert snapshot(tmp_path) == expected
    assert (live / "x").read_text() == "in use"


def test_a_new_staging_folder_names_this_process_and_clears_stale_ones(tmp_path):
    stale = tmp_path / f"curate-upload-{_dead_pid()}-abc123"
    stale.mkdir()
    made = staging.make(tmp_path)
    assert made.is_dir() and made.name.startswith(f"curate-upload-{os.getpid()}-")
    assert not stale.exists()
    assert staging.clean_stale(tmp_path) == []  # our own folder is never stale while we run
    assert made.is_dir()
