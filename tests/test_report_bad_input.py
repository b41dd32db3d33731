"""Every mistake with `curate report` is one `curate: error:` line, exit 2, and touches nothing."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import assert_fails, run
from report_helpers import scored_with_nulls


@pytest.fixture
def scored(tmp_path):
    return scored_with_nulls(tmp_path / "s.parquet", n=60)


def _setup(tmp_path, scored, case):
    """Files a case needs; returns (args after `report`, fragments)."""
    out = tmp_path / "r.html"
    if case == "missing":
        return [tmp_path / "nope.parquet", "-o", out], ["nope.parquet", "no such file"]
    if case == "directory":
        (tmp_path / "d.parquet").mkdir()
        return [tmp_path / "d.parquet", "-o", out], ["d.parquet", "directory"]
    if case == "not_parquet":
        (tmp_path / "t.parquet").write_text("id,el2n\n1,2\n")
        return [tmp_path / "t.parquet", "-o", out], ["t.parquet", "not a readable Parquet"]
    if case == "no_id":
        pq.write_table(pa.table({"el2n": [0.1, 0.2]}), tmp_path / "n.parquet")
        return [tmp_path / "n.parquet", "-o", out], ["no 'id' column"]
    if case == "no_scores":
        pq.write_table(pa.table({"id": ["a"], "label": ["x"]}), tmp_path / "n.parquet")
        return [tmp_path / "n.parquet", "-o", out], ["no score columns"]
    if case == "no_rows":
        pq.write_table(pa.table({"id": pa.array([], pa.string()), "el2n": pa.array([], pa.float64())}), tmp_path / "n.parquet")
        return [tmp_path / "n.parquet", "-o", out], ["no rows"]
    if case == "examples_negative":
        return [scored, "-o", out, "--examples", "-1"], ["--examples -1", "between 0 and 100"]
    if case == "examples_huge":
        return [scored, "-o", out, "--examples", "1000000"], ["--examples 1000000", "between 0 and 100"]
    if case == "examples_malformed":
        return [scored, "-o", out, "--examples", "many"], ["'--examples'", "valid integer"]
    if case == "sample_malformed":
        return [scored, "-o", out, "--map-sample", "1e3"], ["'--map-sample'", "valid integer"]
    if case == "sample_zero":
        return [scored, "-o", out, "--map-sample", "0"], ["--map-sample 0", "between 100"]
    if case == "sample_huge":
        return [scored, "-o", out, "--map-sample", str(10**12)], ["--map-sample", "200,000"]
    if case == "seed_negative":
        return [scored, "-o", out, "--seed", "-1"], ["--seed -1"]
    if case == "seed_huge":
        return [scored, "-o", out, "--seed", str(2**40)], ["--seed", "4294967295"]
    if case == "map_score_unknown":
        return [scored, "-o", out, "--map-score", "nope"], ["--map-score 'nope'", "el2n"]
    if case == "map_score_not_a_score":
        return [scored, "-o", out, "--map-score", "label"], ["--map-score 'label'"]
    if case == "exists":
        out.write_text("old")
        return [scored, "-o", out], ["r.html", "--overwrite"]
    if case == "foreign_html":
        out.write_text("<html>someone's page</html>")
        return [scored, "-o", out, "--overwrite"], ["r.html", "not written by curate"]
    if case == "foreign_files_dir":
        (tmp_path / "r_files").mkdir()
        (tmp_path / "r_files" / "mine.txt").write_text("x")
        return [scored, "-o", out, "--overwrite"], ["r_files", "not written by curate"]
    if case == "files_dir_is_file":
        (tmp_path / "r_files").write_text("x")
        return [scored, "-o", out, "--overwrite"], ["r_files", "not a folder"]
    if case == "files_dir_no_overwrite":
        (tmp_path / "r_files").mkdir()
        return [scored, "-o", out], ["r_files", "--overwrite"]
    if case == "output_is_input":
        return [scored, "-o", scored], ["s.parquet", "output is the input"]
    if case == "output_not_html":
        return [scored, "-o", tmp_path / "r.txt"], ["r.txt", ".html"]
    if case == "output_is_dir":
        out.mkdir()
        return [scored, "-o", out, "--overwrite"], ["r.html", "is a directory"]
    if case == "source_missing":
        return [scored, "-o", out, "--source", tmp_path / "nope.csv"], ["nope.csv", "no such file"]
    if case == "source_unknown_format":
        (tmp_path / "src.txt").write_text("hello")
        return [scored, "-o", out, "--source", tmp_path / "src.txt"], ["src.txt", "unknown table format"]
    if case == "source_no_text":
        (tmp_path / "src.csv").write_text("id,x\nr0000,1\n")
        return [scored, "-o", out, "--source", tmp_path / "src.csv"], ["src.csv", "no text column"]
    if case == "source_other_ids":
        (tmp_path / "src.csv").write_text("id,body\nzz1,hello\nzz2,world\n")
        return [scored, "-o", out, "--source", tmp_path / "src.csv"], ["src.csv", "none of the shown ids"]
    if case == "source_no_id_column":
        (tmp_path / "src.csv").write_text("key,body\nr0000,hello\n")
        return [scored, "-o", out, "--source", tmp_path / "src.csv"], ["src.csv", "'id'"]
    if case == "source_image_folder_other_ids":
        from PIL import Image

        (tmp_path / "imgs" / "a").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a" / "0.png")
        return [scored, "-o", out, "--source", tmp_path / "imgs"], ["imgs", "none of the shown ids is an image"]
    if case == "source_glob_empty":
        return [scored, "-o", out, "--source", str(tmp_path / "*.jsonl")], ["matches no file"]
    if case == "source_empty_dir":
        (tmp_path / "empty").mkdir()
        return [scored, "-o", out, "--source", tmp_path / "empty"], ["empty", "holds no"]
    raise AssertionError(case)


CASES = ["missing", "directory", "not_parquet", "no_id", "no_scores", "no_rows", "examples_negative",
         "examples_huge", "examples_malformed", "sample_malformed", "sample_zero", "sample_huge", "seed_negative", "seed_huge", "map_score_unknown",
         "map_score_not_a_score", "exists", "foreign_html", "foreign_files_dir", "files_dir_is_file",
         "files_dir_no_overwrite", "output_is_input", "output_not_html", "output_is_dir", "source_missing",
         "source_unknown_format", "source_no_text", "source_other_ids", "source_no_id_column",
         "source_image_folder_other_ids", "source_glob_empty", "source_empty_dir"]


@pytest.mark.parametrize("case", CASES)
def test_report_bad_input(tmp_path, scored, case):
    args, fragments = _setup(tmp_path, scored, case)
    assert_fails(["report", *args], *fragments, root=tmp_path)


def test_help_states_the_ranges():
    r = run("report", "--help")
    text = " ".join(r.stdout.split())
    assert r.exit_code == 0
    for part in ("0-100", "100-200000", "0-4294967295"):
        assert part in text
