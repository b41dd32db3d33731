"""A SIGTERM/SIGINT whose exception Python swallows (raised inside a ``__del__``) still stops the run.

Python runs a signal handler in whatever frame is current; in a ``__del__`` the exception it raises
is printed ("Exception ignored in ...") and dropped. These tests put the process in exactly that
frame when the signal arrives, for real: the atomic commit's test hook with
``CURATE_TEST_PAUSE_IN_DEL=1`` sleeps inside a ``__del__`` just before the rename, and a small
driver script (``DRIVER``) drops an object whose ``__del__`` sleeps right after the first training
epoch of ``curate score``. Expected: exit 128 + signal, no output, no temporaries, whether or not the
exception was swallowed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import snapshot
from score_helpers import clusters, write_pool

REPO = Path(__file__).resolve().parents[1]
SWALLOWED = "Exception ignored"  # Python's own line: proof that the handler's exception was dropped

# `python -c DRIVER ARGS...` runs `curate ARGS...` as the console script does, after wrapping the
# progress bar: after the first batch it announces itself and sleeps, inside a __del__ when
# CURATE_TEST_SLEEP_IN_DEL is set (else in ordinary code), and it prints a line per batch.
DRIVER = """
import os, sys, time
from curate import progress
from curate.cli import main

def sleep(seconds):
    # Short sleeps: a signal received by another thread (torch's) interrupts no sleep of this one;
    # the handler runs when this thread next runs Python code, which must still be in the sleep.
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)

class SleepOnDelete:
    def __del__(self):
        print("driver: sleeping", file=sys.stderr, flush=True)  # announced inside: the signal lands here
        sleep(120)

advance, batches = progress.Bar.advance, []

def advance_then_sleep(self, n=1):
    advance(self, n)
    if n:
        batches.append(n)
        print(f"driver: batch {len(batches)}", file=sys.stderr, flush=True)
    if len(batches) == 1 and n:
        if os.environ.get("CURATE_TEST_SLEEP_IN_DEL"):
            SleepOnDelete()  # dropped at once: its __del__ runs now
        else:
            print("driver: sleeping", file=sys.stderr, flush=True)
            sleep(120)

progress.Bar.advance = advance_then_sleep
sys.argv = ["curate", *sys.argv[1:]]
main()
"""


def _start(cwd: Path, argv: list, env: dict) -> subprocess.Popen:
    # SIGINT back to its default in the child: a suite started in the background (SIGINT ignored)
    # would pass that on, and curate rightly leaves an inherited ignored SIGINT ignored.
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _signal_at(p: subprocess.Popen, marker: str, sig: int) -> str:
    """Wait for ``marker`` on the process's stderr, send ``sig``, return all of stderr.

    Blocking reads, not select(): two lines can arrive in one read, and select() does not see
    the second one waiting in Python's buffer.
    """
    guard = threading.Timer(300, p.kill)  # a run that never reaches the marker fails, not hangs
    guard.start()
    seen = []
    try:
        for line in p.stderr:
            seen.append(line)
            if marker in line:
                break
        assert marker in "".join(seen), f"exited before {marker!r}: {''.join(seen)}"
        p.send_signal(sig)
        _, rest = p.communicate(timeout=120)
    finally:
        guard.cancel()
    return "".join(seen) + rest


CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}


SCORE = ["score", "pool.parquet", "-m", "el2n", "-K", "2", "--threads", "1", "-t", "1"]


def _pool(root: Path) -> dict:
    X, y = clusters(24, d=4, classes=2)
    write_pool(root / "pool.parquet", X, y)
    return snapshot(root)


# A plain SIGTERM at the commit is tested for every step in test_signals.py.
@pytest.mark.parametrize("sig,in_del", [(signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGINT, False)],
                         ids=["SIGTERM-swallowed", "SIGINT-swallowed", "SIGINT-plain"])
def test_signal_at_the_commit_never_commits(tmp_path, sig, in_del):
    before = _pool(tmp_path)
    env = {"CURATE_TEST_PAUSE_BEFORE_COMMIT": "120", "CURATE_TEST_PAUSE_PATH": "scored.parquet"}
    if in_del:
        env["CURATE_TEST_PAUSE_IN_DEL"] = "1"
    p = _start(tmp_path, [sys.executable, "-m", "curate", *SCORE, "-o", "scored.parquet"], env)
    err = _signal_at(p, "test hook", sig)
    assert p.returncode == CODES[sig], err
    assert (SWALLOWED in err) is in_del, err
    assert snapshot(tmp_path) == before, "the interrupted run committed or left something"


@pytest.mark.parametrize("in_del", [True, False], ids=["swallowed", "plain"])
def test_sigterm_in_the_middle_stops_at_the_next_batch(tmp_path, in_del):
    before = _pool(tmp_path)
    env = {"CURATE_TEST_SLEEP_IN_DEL": "1"} if in_del else {}
    # Four training epochs, one progress step each: the driver sleeps after the first.
    p = _start(tmp_path, [sys.executable, "-c", DRIVER, *SCORE[:-1], "4", "-o", "scored.parquet"], env)
    err = _signal_at(p, "driver: sleeping", signal.SIGTERM)
    assert p.returncode == 143, err
    assert (SWALLOWED in err) is in_del, err
    assert "driver: batch 2" not in err, "the run went on after the signal"
    assert snapshot(tmp_path) == before, "the interrupted run committed or left something"
