"""Interrupted writes: SIGTERM and kill -9 at the final rename of each step, then the same command.

Each step runs as a real ``python -m curate`` process. The test hook
``CURATE_TEST_PAUSE_BEFORE_COMMIT`` (curate/io/atomic.py) makes it announce and sleep just before
renaming the output named by ``CURATE_TEST_PAUSE_PATH``; the test signals it there. Expected:
SIGTERM leaves the directory exactly as before (exit 143); kill -9 may leave temporaries, which
the next run of the same command removes; that run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import snapshot
from embed_helpers import write_jsonl

REPO = Path(__file__).resolve().parents[1]
ID = ["--text-column", "text", "--label-column", "label", "--id-column", "id"]

# (name, command, outputs it writes, output whose commit is interrupted)
STEPS = [
    ("embed", ["embed", "in/train.jsonl", *ID, "-o", "w/train.parquet"], ["w/train.parquet"], "train.parquet"),
    ("embed-holdout", ["embed", "in/holdout.jsonl", *ID, "-o", "w/holdout.parquet"], ["w/holdout.parquet"], "holdout.parquet"),
    ("il", ["il", "train", "w/holdout.parquet", "-o", "w/il", "--epochs", "3"], ["w/il"], "il"),
    ("score", ["score", "w/train.parquet", "--il", "w/il", "-m", "el2n", "-m", "rho", "-K", "2", "-t", "1",
               "-o", "w/scored.parquet"], ["w/scored.parquet"], "scored.parquet"),
    ("prune", ["prune", "w/scored.parquet", "--keep", "el2n > q0.3", "--source", "in/train.jsonl",
               "-o", "w/kept.jsonl", "--dropped", "w/dropped.csv"], ["w/kept.jsonl", "w/dropped.csv"], "kept.jsonl"),
    ("report", ["report", "w/scored.parquet", "-o", "w/r.html"], ["w/r.html", "w/r_files"], "r_files"),
]


def curate(cwd: Path, args, env_extra=None, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "curate", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def run_ok(cwd: Path, args) -> None:
    p = curate(cwd, args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err


def stop_at_commit(cwd: Path, args, name: str, sig: int) -> int:
    """Run ``args`` until it is about to rename ``name`` into place, send ``sig``, return the exit code."""
    p = curate(cwd, args, {"CURATE_TEST_PAUSE_BEFORE_COMMIT": "120", "CURATE_TEST_PAUSE_PATH": name})
    deadline = time.monotonic() + 300
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([p.stderr], [], [], 5)
        if not ready:
            continue
        line = p.stderr.readline()
        assert line, f"curate exited before the commit of {name}: {''.join(seen)}"
        seen.append(line)
        if "test hook" in line:
            break
    p.send_signal(sig)
    p.communicate(timeout=60)
    return p.returncode


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    """Run the whole pipeline once, uninterrupted; keep every output's bytes as the reference."""
    root = tmp_path_factory.mktemp("pipe")
    (root / "in").mkdir()
    write_jsonl(root / "in" / "train.jsonl")
    write_jsonl(root / "in" / "holdout.jsonl")
    inputs_before = snapshot(root / "in")
    for _, args, _, _ in STEPS:
        run_ok(root, args)
    return root, inputs_before, snapshot(root)


@pytest.mark.slow
def test_pipeline_never_changes_its_inputs(pipe):
    root, inputs_before, _ = pipe
    assert snapshot(root / "in") == inputs_before


def _without_parts(snap: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in snap.items() if ".parts" not in k}


def _remove(root: Path, outputs) -> None:
    for o in outputs:
        p = root / o
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        (p.parent / f".{p.name}.curate").unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS, ids=[s[0] for s in STEPS])
def test_interrupted_commit_then_rerun_gives_identical_bytes(pipe, step):
    root, _, reference = pipe
    _, args, outputs, name = step
    _remove(root, outputs)
    before = snapshot(root)

    assert stop_at_commit(root, args, name, signal.SIGTERM) == 143
    # embed keeps its finished shards (OUT.parts/) for the next run to resume from; nothing else may change.
    assert _without_parts(snapshot(root)) == before, "SIGTERM left something behind or wrote part of the outputs"

    assert stop_at_commit(root, args, name, signal.SIGKILL) == -signal.SIGKILL
    assert snapshot(root) != before  # kill -9 runs no cleanup: its temporaries are still there

    run_ok(root, args)
    assert snapshot(root) == reference, "the re-run differs from the uninterrupted run or left leftovers"


GROUP_SCRIPT = """
import signal, sys
signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
from pathlib import Path
from curate.io.atomic import atomic_group, check_output
a, b = Path("a.jsonl"), Path("b")
check_output(a, True); check_output(b, True)
with atomic_group([a, b]) as (ta, tb):
    ta.write_text(sys.argv[1])
    tb.mkdir()
    (tb / "x.txt").write_text(sys.argv[1])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_group_killed_between_renames_is_undone_by_the_next_run(tmp_path, sig):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", GROUP_SCRIPT, "old"], cwd=tmp_path, env=env, check=True)
    before = snapshot(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", GROUP_SCRIPT, "new"],
                         cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                         env={**env, "CURATE_TEST_PAUSE_BETWEEN_RENAMES": "120"})
    assert "test hook" in p.stderr.readline()
    p.send_signal(sig)
    p.communicate(timeout=60)
    if_killed = snapshot(tmp_path)
    # SIGTERM unwinds and undoes the half-done group at once; kill -9 leaves one output renamed in.
    assert (if_killed == before) is (sig == signal.SIGTERM)
    # The next run on either output first restores the state before the interrupted command.
    probe = "from curate.io.atomic import check_output; check_output('b', True)"
    subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True)
    assert snapshot(tmp_path) == before
    subprocess.run([sys.executable, "-c", GROUP_SCRIPT, "new"], cwd=tmp_path, env=env, check=True)
    assert (tmp_path / "a.jsonl").read_text() == "new" and (tmp_path / "b" / "x.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.jsonl.curate", ".b.curate", "a.jsonl", "b"]


def test_second_concurrent_run_fails_fast(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "d.jsonl", n=4)
    args = ["embed", "in/d.jsonl", "--text-column", "text", "-o", "out.parquet"]
    first = curate(tmp_path, args, {"CURATE_TEST_PAUSE_BEFORE_COMMIT": "120", "CURATE_TEST_PAUSE_PATH": "out.parquet"})
    try:
        while "test hook" not in first.stderr.readline():
            pass
        second = subprocess.run([sys.executable, "-m", "curate", *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        line = second.stderr.strip()
        assert line == (f"curate: error: another curate is writing out.parquet (pid {first.pid}); "
                        "wait for it to finish or choose another output")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143
    # No temporaries and no lock; embed keeps its finished shards (out.parquet.parts/) to resume from.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
@pytest.mark.parametrize("step_name,name", [("prune", "dropped.csv"), ("report", "r.html")])
def test_two_output_step_is_all_or_none(pipe, step_name, name):
    root, _, reference = pipe
    _, args, outputs, _ = next(s for s in STEPS if s[0] == step_name)
    _remove(root, outputs)
    before = snapshot(root)
    code = stop_at_commit(root, args, name, signal.SIGTERM)
    after = snapshot(root)
    run_ok(root, args)  # leave the reference state for the other tests, whatever happened
    assert snapshot(root) == reference
    assert code == 143 and after == before, "SIGTERM at the second output left the first one written"
