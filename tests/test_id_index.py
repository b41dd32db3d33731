"""curate.io.id_index against a Python dict built in file order (the obvious lookup)."""

import numpy as np
import pyarrow as pa

from curate.io.id_index import IdIndex


def test_lookup_matches_a_dict_built_in_file_order():
    rng = np.random.default_rng(0)
    words = [f"id-{i}" for i in rng.integers(0, 500, 2000)] + ["", "é", "a\x00b"]  # repeats, empty, non-ASCII, NUL
    values = rng.integers(0, 100, len(words)).astype(np.int32)
    batches = [(pa.array(words[s:s + 301], pa.string()), values[s:s + 301]) for s in range(0, len(words), 301)]
    index = IdIndex(batches, np.int32)
    oracle = dict(zip(words, values.tolist()))
    query = [f"id-{i}" for i in range(-5, 505)] + ["", "é", "a\x00b", "a", None]
    found, got = index.lookup(pa.array(query, pa.string()))
    assert found.tolist() == [q in oracle for q in query]
    assert [int(v) for v, f in zip(got, found) if f] == [oracle[q] for q in query if q in oracle]
    assert len(index) == len(words)


def test_empty_index_finds_nothing():
    index = IdIndex([], bool)
    found, _ = index.lookup(pa.array(["a", None], pa.string()))
    assert found.tolist() == [False, False] and len(index) == 0
    found, _ = IdIndex([(pa.array([], pa.string()), np.zeros(0, bool))], bool).lookup(pa.array(["a"]))
    assert found.tolist() == [False]
