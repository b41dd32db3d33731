"""Sources: ids read as text, the JSON id rule, row-addressed errors, image paths kept inside."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.errors import InputError
from curate.io.sources import ID, PATH, open_source


def _ids(path, **kw):
    src = open_source(path)
    return pa.Table.from_batches(list(src.rows(["text"], "id", **kw))).column(ID).to_pylist()


def test_csv_ids_are_text_as_written(tmp_path):
    (tmp_path / "a.csv").write_text("id,text\n007,x\n1,y\n01,z\n")
    assert _ids(tmp_path / "a.csv") == ["007", "1", "01"]


def test_json_integer_ids_are_their_decimal_text(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 7, "text": "x"}\n{"id": 12, "text": "y"}\n')
    assert _ids(tmp_path / "a.jsonl") == ["7", "12"]


def test_segments_read_only_the_given_rows_across_files(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.csv").write_text("text\np\nq\nr\n")
    (d / "b.csv").write_text("text\ns\nt\n")
    src = open_source(d)
    rows = pa.Table.from_batches(list(src.rows(["text"], None, batch_rows=1, segments=((0, 2, 3), (1, 0, 1)))))
    assert rows.column(ID).to_pylist() == ["a.csv:2", "b.csv:0"]
    assert rows.column("text").to_pylist() == ["r", "s"]


def test_image_paths_resolve_inside_the_table_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "t.csv").write_text("path\nsub/a.png\n../b.png\n")
    src = open_source(tmp_path / "t.csv")
    with pytest.raises(InputError, match=r"t.csv: row 1: image path '../b.png'.*--allow-outside-paths"):
        list(src.rows(["path"], None, "path"))
    rows = pa.Table.from_batches(list(src.rows(["path"], None, "path", allow_outside=True)))
    assert rows.column(PATH).to_pylist() == [str(tmp_path / "sub" / "a.png"), str(tmp_path.parent / "b.png")]
