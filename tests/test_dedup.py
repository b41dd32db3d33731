"""Near-duplicate columns checked against all-pairs float64 cosine, a union-find and per-group loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pyarrow as pa

from curate.errors import InputError
from curate.io.parquet import read_provenance, read_table, write_table
from curate.scores.dedup import check_threshold, dedup_columns, dedup_score, parse_keep_by
from score_helpers import write_pool

T = 0.9


def planted(seed: int = 0, bases: int = 40, d: int = 16):
    """Random directions, each with 0-3 noisy copies and some exact copies; ids in shuffled order."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(bases):
        b = rng.normal(size=d)
        rows.append(b)
        for _ in range(rng.integers(0, 4)):
            rows.append(b + rng.normal(0, 0.08, d) * np.linalg.norm(b) / math.sqrt(d))
        if rng.random() < 0.2:
            rows.append(b * 3.0)  # same direction, other norm: cosine exactly 1
    X = np.asarray(rows, np.float32)
    ids = [f"r{v:04d}" for v in rng.permutation(len(X))]
    return ids, X


def cosines(X):
    Xn = X.astype(np.float64) / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    return Xn @ Xn.T


def oracle_groups(X, t):
    """Union-find over every pair with float64 cosine >= t; returns the set of groups (as id-index sets)."""
    S = cosines(X)
    parent = list(range(len(X)))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(len(X)):
        for b in range(a + 1, len(X)):
            if S[a, b] >= t:
                parent[find(a)] = find(b)
    comps: dict[int, set[int]] = {}
    for a in range(len(X)):
        comps.setdefault(find(a), set()).add(a)
    return {frozenset(c) for c in comps.values() if len(c) > 1}


def found_groups(cols):
    g = cols["dup_group"].to_pylist()
    out: dict[int, set[int]] = {}
    for r, v in enumerate(g):
        if v is not None:
            out.setdefault(v, set()).add(r)
    return {frozenset(c) for c in out.values()}


def no_borderline(X, t):
    S = cosines(X)
    off = S[~np.eye(len(X), dtype=bool)]
    return float(np.abs(off - t).min())


def test_groups_equal_all_pairs_union_find():
    ids, X = planted()
    assert no_borderline(X, T) > 1e-4
    cols, prov = dedup_columns(ids, X, T)
    expected = oracle_groups(X, T)
    assert len(expected) >= 10
    assert found_groups(cols) == expected
    assert prov["search"] == "exact" and prov["groups"] == len(expected)
    assert cols["dup_keep"].to_pylist() == [v is None for v in cols["dup_of"].to_pylist()]
    assert sum(cols["dup_keep"].to_pylist()) == len(X) - sum(len(g) - 1 for g in expected)
    # rows in no group: null group and null dup_of
    grouped = set().union(*expected)
    for r in range(len(X)):
        if r not in grouped:
            assert cols["dup_group"][r].as_py() is None and cols["dup_of"][r].as_py() is None


def test_dup_sim_is_nearest_other_cosine():
    ids, X = planted(1)
    cols, _ = dedup_columns(ids, X, T)
    S = cosines(X)
    np.fill_diagonal(S, -np.inf)
    np.testing.assert_allclose(cols["dup_sim"].to_numpy(), S.max(axis=1), atol=1e-5)


def test_kept_row_is_nearest_centroid_then_smallest_id():
    ids, X = planted(2)
    cols, _ = dedup_columns(ids, X, T)
    dup_of = cols["dup_of"].to_pylist()
    for group in oracle_groups(X, T):
        members = sorted(group, key=lambda r: ids[r])
        unit = [[float(v) / math.sqrt(sum(float(w) ** 2 for w in X[r])) for v in X[r]] for r in members]
        c = [sum(col) / len(unit) for col in zip(*unit)]
        cn = math.sqrt(sum(v * v for v in c))
        score = [sum(a * b for a, b in zip(u, c)) / cn for u in unit]
        best = max(score)
        kept = next(members[k] for k, s in enumerate(score) if s >= best - 1e-6)  # ties: smallest id
        assert dup_of[kept] is None
        assert all(dup_of[r] == ids[kept] for r in members if r != kept)


def test_exact_duplicates_found_at_threshold_one():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 8)).astype(np.float32)
    X[7] = X[3]
    X[20] = X[3] * 0.5
    X[11] = X[29]
    ids = [f"x{i:02d}" for i in range(30)]
    cols, _ = dedup_columns(ids, X, 1.0)
    assert found_groups(cols) == {frozenset({3, 7, 20}), frozenset({11, 29})}
    # groups of equal vectors: all tie on the centroid, the smallest id is kept
    assert cols["dup_of"].to_pylist()[7] == "x03" and cols["dup_of"].to_pylist()[20] == "x03"
    assert cols["dup_of"].to_pylist()[29] == "x11"


@pytest.mark.parametrize("keep_highest", [True, False])
def test_same_kept_rows_and_groups_under_shuffle(keep_highest):
    ids, X = planted(4)
    values = np.random.default_rng(5).integers(0, 3, len(X)).astype(float)  # many ties: id decides
    values[::7] = np.nan
    for keep_by in (None, values):
        a, _ = dedup_columns(ids, X, T, keep_by=keep_by, keep_highest=keep_highest)
        perm = np.random.default_rng(6).permutation(len(X))
        b, _ = dedup_columns([ids[p] for p in perm], X[perm],
                             T, keep_by=None if keep_by is None else keep_by[perm], keep_highest=keep_highest)
        for col in ("dup_of", "dup_keep", "dup_group", "dup_sim"):
            by_id_a = dict(zip(ids, a[col].to_pylist()))
            by_id_b = dict(zip([ids[p] for p in perm], b[col].to_pylist()))
            if col == "dup_sim":
                np.testing.assert_allclose([by_id_a[k] for k in ids], [by_id_b[k] for k in ids], atol=1e-6)
            else:
                assert by_id_a == by_id_b


def test_keep_by_highest_and_lowest_value_ties_to_smallest_id():
    ids, X = planted(7)
    values = np.random.default_rng(8).integers(0, 4, len(X)).astype(float)
    values[::5] = np.nan
    for keep_highest in (True, False):
        cols, _ = dedup_columns(ids, X, T, keep_by=values, keep_highest=keep_highest)
        dup_of = cols["dup_of"].to_pylist()
        for group in oracle_groups(X, T):
            def rank(r):
                v = values[r]
                good = -math.inf if math.isnan(v) else (v if keep_highest else -v)
                return (-good, ids[r])
            kept = min(group, key=rank)
            assert dup_of[kept] is None
            assert all(dup_of[r] == ids[kept] for r in group if r != kept)


def test_blocks_do_not_change_the_result():
    ids, X = planted(9)
    a, _ = dedup_columns(ids, X, T)
    b, _ = dedup_columns(ids, X, T, block_bytes=4 * len(X) * 3)  # three rows per block
    assert a["dup_of"].equals(b["dup_of"]) and a["dup_group"].equals(b["dup_group"])
    np.testing.assert_array_equal(a["dup_sim"].to_numpy(), b["dup_sim"].to_numpy())


def test_ivf_path_with_every_list_probed_equals_brute_force():
    ids, X = planted(10, bases=80)
    cols, prov = dedup_columns(ids, X, T, exact_max=0, nprobe=10_000, threads=1)
    assert prov["search"] == "ivf" and prov["nprobe"] == prov["nlist"]
    assert found_groups(cols) == oracle_groups(X, T)
    S = cosines(X)
    np.fill_diagonal(S, -np.inf)
    np.testing.assert_allclose(cols["dup_sim"].to_numpy(), S.max(axis=1), atol=1e-5)


def test_against_equals_brute_force():
    ids, X = planted(11)
    rng = np.random.default_rng(12)
    E = np.concatenate([X[rng.choice(len(X), 6, replace=False)] + rng.normal(0, 0.02, (6, X.shape[1])),
                        rng.normal(size=(20, X.shape[1]))]).astype(np.float32)
    E[25] = E[0]  # two equal eval rows: the smaller id wins
    eids = [f"e{v:03d}" for v in rng.permutation(len(E))]
    cols, prov = dedup_columns(ids, X, T, against=(eids, E))
    Xd, Ed = X.astype(np.float64), E.astype(np.float64)
    S = (Xd / np.linalg.norm(Xd, axis=1, keepdims=True)) @ (Ed / np.linalg.norm(Ed, axis=1, keepdims=True)).T
    contam_of = cols["contam_of"].to_pylist()
    for r in range(len(X)):
        best = S[r].max()
        nearest = min((eids[k] for k in range(len(E)) if S[r, k] >= best - 1e-6), key=str)
        assert contam_of[r] == (nearest if best >= T else None)
    np.testing.assert_allclose(cols["contam_sim"].to_numpy(), S.max(axis=1), atol=1e-5)
    assert prov["contaminated"] == sum(v is not None for v in contam_of) >= 6


@pytest.mark.parametrize("bad", [0, -0.5, 1.0001, 2, float("nan"), "abc", None])
def test_threshold_out_of_range_is_one_line_input_error(bad):
    with pytest.raises(InputError, match="dedup-threshold") as e:
        check_threshold(bad)
    assert "\n" not in str(e.value) and "(0, 1]" in str(e.value)


def test_zero_vector_is_input_error_naming_row():
    X = np.eye(4, dtype=np.float32)
    X[2] = 0
    with pytest.raises(InputError, match="'b2'.*zero embedding"):
        dedup_columns(["b0", "b1", "b2", "b3"], X, 0.9)
    with pytest.raises(InputError, match="against.*'e1'"):
        dedup_columns(["b0", "b1"], np.eye(2, dtype=np.float32), 0.9,
                      against=(["e0", "e1"], np.array([[1, 0], [0, 0]], np.float32)))


def test_against_dimension_mismatch_is_input_error():
    with pytest.raises(InputError, match="dimension 3 differs"):
        dedup_columns(["a", "b"], np.eye(2, dtype=np.float32), 0.9, against=(["e"], np.ones((1, 3), np.float32)))


def test_single_row_has_null_similarity_and_no_group():
    cols, _ = dedup_columns(["only"], np.ones((1, 4), np.float32), 0.9)
    assert cols["dup_sim"].to_pylist() == [None]
    assert cols["dup_group"].to_pylist() == [None] and cols["dup_of"].to_pylist() == [None]


def test_keep_by_spec():
    assert parse_keep_by("el2n", ["el2n", "rho"]) == ("el2n", True)
    assert parse_keep_by("el2n:min", ["el2n"]) == ("el2n", False)
    assert parse_keep_by("a:b:max", ["a:b"]) == ("a:b", True)
    with pytest.raises(InputError, match="no column 'grand'.*el2n, rho"):
        parse_keep_by("grand", ["rho", "el2n"])


def test_empty_pool_is_input_error():
    with pytest.raises(InputError, match="no rows"):
        dedup_columns([], np.zeros((0, 4), np.float32), 0.9)


def test_dedup_score_reads_keep_by_and_against_from_files(tmp_path):
    ids, X = planted(13)
    pool = write_pool(tmp_path / "pool.parquet", X, ids=ids)
    values = np.random.default_rng(14).normal(size=len(X))
    t = read_table(pool).append_column("el2n", pa.array(values))
    write_table(t, pool, read_provenance(pool))
    E = X[:5] + 0.01
    ev = write_pool(tmp_path / "eval.parquet", E, ids=[f"e{k}" for k in range(5)])
    cols, prov = dedup_score(pool, ids, X, read_provenance(pool), T, keep_by="el2n:min", against=ev)
    expect, _ = dedup_columns(ids, X, T, keep_by=values, keep_highest=False, against=([f"e{k}" for k in range(5)], E))
    for c in ("dup_of", "dup_group", "contam_of"):
        assert cols[c].equals(expect[c])
    assert prov["keep_by"] == "el2n" and prov["against"]["sha256"] and prov["contaminated"] >= 5
    # a column computed in the same run takes precedence over the file
    same_run, _ = dedup_score(pool, ids, X, {}, T, keep_by="grand", new_columns={"grand": pa.array(-values)})
    assert same_run["dup_of"].equals(dedup_columns(ids, X, T, keep_by=-values)[0]["dup_of"])


def test_dedup_score_bad_files(tmp_path):
    ids, X = planted(15)
    pool = write_pool(tmp_path / "pool.parquet", X, ids=ids)
    other = write_pool(tmp_path / "other.parquet", X[:3], ids=["a", "b", "c"], model_sha="b" * 64)
    with pytest.raises(InputError, match="different model"):
        dedup_score(pool, ids, X, read_provenance(pool), T, against=other)
    with pytest.raises(InputError, match="no column 'rho'"):
        dedup_score(pool, ids, X, {}, T, keep_by="rho")
    with pytest.raises(InputError, match="not numeric"):
        dedup_score(pool, ids, X, {}, T, keep_by="id")
    bare = tmp_path / "bare.parquet"
    write_table(pa.table({"id": ["a"]}), bare, {})
    with pytest.raises(InputError, match="no 'embedding' column"):
        dedup_score(pool, ids, X, {}, T, against=bare)


def test_method_adapter_on_the_score_base(tmp_path):
    base = pytest.importorskip("curate.scores.base", reason="the ScoreMethod base arrives with branch score-methods")
    from types import SimpleNamespace

    from curate.runtime import Runtime
    from curate.scores.dedup import Dedup, DedupConfig

    ids, X = planted(16)
    pool = write_pool(tmp_path / "pool.parquet", X, ids=ids)
    ev = write_pool(tmp_path / "eval.parquet", X[:4], ids=["e0", "e1", "e2", "e3"])
    cfg = SimpleNamespace(dedup=DedupConfig(threshold=T, against=str(ev)), seed=0)
    method = Dedup()
    method.check(cfg)
    ctx = base.ScoreContext(pool=pool, ids=ids, X=X, table=read_table(pool, columns=["id"]), prov=read_provenance(pool),
                            cfg=cfg, runtime=Runtime.build("cpu", threads=1), common={"seed": 0})
    cols = method.compute(ctx)
    assert [c.name for c in method.columns] == list(cols)
    assert all(cols[c.name].type == c.type for c in method.columns)
    expect, _ = dedup_columns(ids, X, T, against=(["e0", "e1", "e2", "e3"], X[:4]))
    assert all(cols[c].equals(expect[c]) for c in ("dup_of", "dup_group", "contam_of"))
    rec = method.provenance(ctx)
    assert rec["method"] == "dedup" and rec["threshold"] == T and rec["against"]["sha256"]
    assert method.summarise(cols) == {"dup_groups": len(oracle_groups(X, T)),
                                      "duplicates": sum(len(g) - 1 for g in oracle_groups(X, T)),
                                      "contaminated": int((cosines(X)[:, :4].max(axis=1) >= T).sum())}
    with pytest.raises(InputError, match="dedup-threshold"):
        method.check(SimpleNamespace(dedup=DedupConfig(threshold=1.5)))
    with pytest.raises(InputError, match="no such file"):
        method.check(SimpleNamespace(dedup=DedupConfig(against=str(tmp_path / "missing.parquet"))))


def test_cli_score_dedup_then_prune_keeps_one_row_per_group(tmp_path):
    """The whole path a user takes: `score -m dedup`, then `prune --keep 'dup_of == null'`."""
    import pyarrow.parquet as pq

    from conftest import assert_fails, run

    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, 16)).astype(np.float32)
    copies = base[:10] + rng.normal(scale=1e-3, size=(10, 16)).astype(np.float32)  # 10 near-copies
    X = np.concatenate([base, copies])
    ids = [f"r{i:03d}" for i in range(50)]
    pool = write_pool(tmp_path / "pool.parquet", X, ids=ids)
    evalset = write_pool(tmp_path / "eval.parquet", base[35:].copy(), ids=[f"e{i}" for i in range(5)])
    scored = tmp_path / "s.parquet"
    r = run("score", pool, "-m", "dedup", "--dedup-threshold", "0.99", "--dedup-against", evalset, "-o", scored, "--json")
    assert r.exit_code == 0, r.stderr
    t = pq.read_table(scored)
    dup_of = t.column("dup_of").to_pylist()
    assert sum(v is not None for v in dup_of) == 10
    # Each pair keeps its smaller id (the centroid rule ties within a pair): the copy points to the original.
    assert all(dup_of[40 + k] == f"r{k:03d}" for k in range(10))
    assert t.column("contam_of").to_pylist()[35:40] == [f"e{i}" for i in range(5)]
    assert read_provenance(scored)["scores"]["dup_of"]["method"] == "dedup"
    kept = tmp_path / "kept.parquet"
    r = run("prune", scored, "--keep", "dup_of == null", "--keep", "contam_of == null", "-o", kept, "--dropped", tmp_path / "d.csv")
    assert r.exit_code == 0, r.stderr
    assert sorted(pq.read_table(kept).column("id").to_pylist()) == ids[:35]
    assert_fails(["score", pool, "-m", "dedup", "--dedup-threshold", "1.5", "-o", tmp_path / "x.parquet"],
                 "1.5", out=tmp_path / "x.parquet")
    assert_fails(["score", pool, "-m", "dedup", "--dedup-keep-by", "id:sideways", "-o", tmp_path / "x.parquet"],
                 "suffix must be :min or :max", out=tmp_path / "x.parquet")
