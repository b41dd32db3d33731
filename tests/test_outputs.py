"""Output rules across every subcommand: curate never replaces what it did not write.

Each case runs a real command on tiny real files and asserts one ``curate: error:`` line with the
expected fragment, exit 2, and that the working directory holds exactly the same files after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_fails, run, snapshot
from embed_helpers import write_jsonl
from score_helpers import clusters, write_pool

from curate.io.atomic import atomic_dir, atomic_group, atomic_path, check_output
from curate.io.parquet import write_table

FOREIGN = "foreign, not curate's"
NOT_OURS = "not written by curate"
IS_INPUT = "output is the input"
EXISTS = "already exists"
UNDER_FILE = "is a file, not a directory"
SAME = "same output path"


def _make_readonly(d: Path) -> None:
    # root ignores permission bits, so make the directory immutable instead (ext4, xfs, btrfs).
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(d)], check=True)
    else:
        d.chmod(0o555)


def _undo_readonly(d: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(d)], check=True)
    else:
        d.chmod(0o755)


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A working directory with curate inputs and things curate must never replace."""
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "data.jsonl", n=12)
    X, y = clusters(12, d=8, classes=2)
    write_pool(tmp_path / "pool.parquet", X, y, ids=[f"doc-{i:03d}" for i in range(12)])
    table = pq.read_table(tmp_path / "pool.parquet")
    scored = table.append_column("el2n", pa.array(np.linspace(0, 1, 12)))
    write_table(scored, tmp_path / "scored.parquet", {"step": "score"})
    # A Parquet file written by someone else (no curate footer key).
    pq.write_table(table.replace_schema_metadata({}), tmp_path / "theirs.parquet")
    (tmp_path / "foreign.txt").write_text(FOREIGN)
    (tmp_path / "foreign.html").write_text(FOREIGN)
    (tmp_path / "foreigndir").mkdir()
    (tmp_path / "foreigndir" / "notes.txt").write_text(FOREIGN)
    (tmp_path / "r_files").mkdir()
    (tmp_path / "r_files" / "notes.txt").write_text(FOREIGN)
    (tmp_path / "afile").write_text(FOREIGN)
    os.symlink("data.jsonl", tmp_path / "link.jsonl")
    os.symlink("foreign.txt", tmp_path / "foreignlink.txt")
    # A file curate wrote (recognised) that the user edited afterwards: no longer curate's.
    with atomic_path(tmp_path / "edited.jsonl") as t:
        t.write_text('{"id": "1"}\n')
    (tmp_path / "edited.jsonl").write_text('{"id": "1", "mine": true}\n')
    ro = tmp_path / "ro"
    ro.mkdir()
    _make_readonly(ro)
    yield tmp_path
    _undo_readonly(ro)


EMBED = ["embed", "data.jsonl", "--text-column", "text"]
IL = ["il", "train", "pool.parquet"]
SCORE = ["score", "pool.parquet", "-m", "el2n"]
PRUNE = ["prune", "scored.parquet", "--keep", "el2n > 0.5"]
REPORT = ["report", "scored.parquet"]
OW = "--overwrite"

CASES = [
    # embed
    ("embed-foreign-file", [*EMBED, "-o", "foreign.txt", OW], NOT_OURS),
    ("embed-foreign-dir", [*EMBED, "-o", "foreigndir", OW], NOT_OURS),
    ("embed-foreign-parquet", [*EMBED, "-o", "theirs.parquet", OW], NOT_OURS),
    ("embed-edited-output", [*EMBED, "-o", "edited.jsonl", OW], NOT_OURS),
    ("embed-foreign-symlink", [*EMBED, "-o", "foreignlink.txt", OW], NOT_OURS),
    ("embed-exists", [*EMBED, "-o", "foreign.txt"], EXISTS),
    ("embed-out-is-input", [*EMBED, "-o", "data.jsonl", OW], IS_INPUT),
    ("embed-out-is-input-via-link", [*EMBED, "-o", "link.jsonl", OW], IS_INPUT),
    ("embed-under-file", [*EMBED, "-o", "afile/out.parquet"], UNDER_FILE),
    ("embed-readonly-dir", [*EMBED, "-o", "ro/out.parquet"], "ro"),
    # il train
    ("il-foreign-file", [*IL, "-o", "foreign.txt", OW], NOT_OURS),
    ("il-foreign-dir", [*IL, "-o", "foreigndir", OW], NOT_OURS),
    ("il-exists", [*IL, "-o", "foreigndir"], EXISTS),
    ("il-out-is-input", [*IL, "-o", "pool.parquet", OW], IS_INPUT),
    ("il-under-file", [*IL, "-o", "afile/il"], UNDER_FILE),
    ("il-readonly-dir", [*IL, "-o", "ro/il"], "ro"),
    # score
    ("score-foreign-file", [*SCORE, "-o", "foreign.txt", OW], NOT_OURS),
    ("score-foreign-dir", [*SCORE, "-o", "foreigndir", OW], NOT_OURS),
    ("score-exists", [*SCORE, "-o", "foreign.txt"], EXISTS),
    ("score-in-place-needs-overwrite", [*SCORE, "-o", "pool.parquet"], EXISTS),
    ("score-in-place-foreign", ["score", "theirs.parquet", "-m", "el2n", "-o", "theirs.parquet", OW], NOT_OURS),
    ("score-out-is-target", [*SCORE, "-m", "gio", "--target", "scored.parquet", "-o", "scored.parquet", OW], IS_INPUT),
    ("score-under-file", [*SCORE, "-o", "afile/s.parquet"], UNDER_FILE),
    ("score-readonly-dir", [*SCORE, "-o", "ro/s.parquet"], "ro"),
    # prune
    ("prune-foreign-file", [*PRUNE, "-o", "foreign.txt", OW], NOT_OURS),
    ("prune-foreign-dir", [*PRUNE, "-o", "foreigndir", OW], NOT_OURS),
    ("prune-exists", [*PRUNE, "-o", "foreign.txt"], EXISTS),
    ("prune-out-is-input", [*PRUNE, "-o", "scored.parquet", OW], IS_INPUT),
    ("prune-out-is-source", [*PRUNE, "--source", "data.jsonl", "-o", "data.jsonl", OW], IS_INPUT),
    ("prune-out-is-source-via-link", [*PRUNE, "--source", "data.jsonl", "-o", "link.jsonl", OW], IS_INPUT),
    ("prune-dropped-is-output", [*PRUNE, "-o", "kept.parquet", "--dropped", "kept.parquet"], SAME),
    ("prune-dropped-is-input", [*PRUNE, "-o", "kept.parquet", "--dropped", "scored.parquet", OW], IS_INPUT),
    ("prune-dropped-foreign", [*PRUNE, "-o", "kept.parquet", "--dropped", "foreign.txt", OW], NOT_OURS),
    ("prune-dropped-exists", [*PRUNE, "-o", "kept.parquet", "--dropped", "foreign.txt"], EXISTS),
    ("prune-dropped-edited", [*PRUNE, "-o", "kept.parquet", "--dropped", "edited.jsonl", OW], NOT_OURS),
    ("prune-under-file", [*PRUNE, "-o", "afile/out.parquet"], UNDER_FILE),
    ("prune-readonly-dir", [*PRUNE, "-o", "ro/out.parquet"], "ro"),
    ("prune-dropped-readonly", [*PRUNE, "-o", "kept.parquet", "--dropped", "ro/d.csv"], "ro"),
    # report
    ("report-foreign-html", [*REPORT, "-o", "foreign.html", OW], NOT_OURS),
    ("report-foreign-files-dir", [*REPORT, "-o", "r.html", OW], NOT_OURS),
    ("report-files-dir-exists", [*REPORT, "-o", "r.html"], EXISTS),
    ("report-out-is-input", [*REPORT, "-o", "scored.parquet", OW], IS_INPUT),
    ("report-under-file", [*REPORT, "-o", "afile/r.html"], UNDER_FILE),
    ("report-readonly-dir", [*REPORT, "-o", "ro/r.html"], "ro"),
]


@pytest.mark.parametrize("args,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_output_rule(ws, args, fragment):
    line = assert_fails(args, fragment, root=ws)
    assert FOREIGN not in line
    assert (ws / "foreign.txt").read_text() == FOREIGN
    assert (ws / "foreigndir" / "notes.txt").read_text() == FOREIGN


def test_there_are_enough_cases():
    assert len(CASES) >= 30
    assert {c[1][0] for c in CASES} == {"embed", "il", "score", "prune", "report"}


def test_overwrite_replaces_curate_outputs_and_empty_ones(ws):
    # Each output kind curate writes is recognised as its own and replaced with --overwrite.
    (ws / "empty.parquet").write_text("")
    (ws / "emptydir").mkdir()
    r = run(*PRUNE, "-o", "kept.parquet", "--dropped", "dropped.csv")
    assert r.exit_code == 0, r.stderr
    for args in (
        [*PRUNE, "-o", "kept.parquet", "--dropped", "dropped.csv", OW],
        [*PRUNE, "-o", "empty.parquet", OW],
        [*IL, "-o", "emptydir", "--epochs", "2", OW],
        [*IL, "-o", "emptydir", "--epochs", "2", OW],
        [*REPORT, "-o", "rep.html"],
        [*REPORT, "-o", "rep.html", OW],
        [*SCORE, "-K", "2", "-t", "1", "-o", "pool.parquet", OW],
    ):
        r = run(*args)
        assert r.exit_code == 0, (args, r.stderr)
    assert (ws / "foreign.txt").read_text() == FOREIGN
    # Nothing left behind: no temporaries, no locks, no journals.
    hidden = sorted(p.name for p in ws.iterdir() if p.name.startswith("."))
    assert all(h.endswith(".curate") for h in hidden), hidden


def test_foreign_dir_is_never_removed_by_a_library_writer(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "keep.txt").write_text(FOREIGN)
    before = snapshot(tmp_path)
    with pytest.raises(Exception, match=NOT_OURS):
        check_output(d, True)
    assert snapshot(tmp_path) == before


def test_group_commit_replaces_all_outputs(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b"
    for content in ("one", "two"):
        check_output(a, True)
        check_output(b, True)
        with atomic_group([a, b]) as (ta, tb):
            ta.write_text(content)
            tb.mkdir()
            (tb / "x.txt").write_text(content)
        assert a.read_text() == content and (b / "x.txt").read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.jsonl.curate", ".b.curate", "a.jsonl", "b"]


def test_group_commit_failing_inside_writes_nothing(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_group([a, b]) as (ta, tb):
            ta.write_text("1")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_dir_commit_marks_it_ours_and_second_commit_replaces(tmp_path):
    d = tmp_path / "d"
    with atomic_dir(d) as t:
        (t / "1").write_text("1")
    check_output(d, True)
    with atomic_dir(d) as t:
        (t / "2").write_text("2")
    assert sorted(p.name for p in d.iterdir()) == ["2"]
    shutil.rmtree(d)
