"""Semantic near-duplicates: groups of rows whose embeddings have cosine >= a threshold.

Rows are L2-normalised, so cosine is the inner product. Two rows are *linked* when their cosine
is >= ``threshold`` (minus ``TOL``, so that exact copies, whose float32 cosine can read
0.99999994, are found at threshold 1). A *group* is a connected component of the links with at
least two rows (single linkage: a chain a~b~c is one group even when cos(a, c) < threshold).

Columns (one value per pool row):
- ``dup_group`` (int64): the group's ordinal among all groups ordered by their smallest id
  (0, 1, ...); null for a row linked to no other row. Independent of input row order.
- ``dup_of`` (string): id of the kept row of this row's group; null for kept rows and for rows in
  no group.
- ``dup_keep`` (bool): true for kept rows and rows in no group, false for the other members of a
  group (exactly the rows with a ``dup_of``), so ``prune --keep 'dup_keep == true'`` deduplicates.
- ``dup_sim`` (float64, in [-1, 1], higher = more redundant): cosine to the nearest other row
  (whether or not it clears the threshold); null when the pool has one row (or, on the IVF path,
  when the probed lists hold no other row).
- with an evaluation set, ``contam_of`` (string: id of the nearest evaluation row when its
  cosine is >= threshold, else null) and ``contam_sim`` (float64: cosine to the nearest
  evaluation row). Ties go to the smallest evaluation id.

Kept row of a group: by default the member nearest the group's centroid (the mean of its
normalised vectors, members taken in id order so the arithmetic does not depend on row order);
cosines within ``TIE`` (1e-6) of the best count as ties, so float32 noise cannot decide, and ties
(every group of two is one) go to the smallest id. With ``keep_by`` values, the member with the
highest value (lowest with ``keep_highest=False``); null/NaN values rank last; ties again to the
smallest id.

Search: up to ``exact_max`` rows, exact brute force in row blocks of at most ``block_bytes`` of
float32 similarities. Beyond it, a faiss IVF index (inner product, ``nlist`` ~ 4 sqrt(n) lists,
``nprobe`` probed): pairs whose rows fall in lists not probed are missed, and ``dup_sim`` may then
be below the true nearest cosine; the miss rate is measured in ``benchmarks/bench_dedup.py``.
The evaluation-set search is always exact (blocked brute force: cost n x m x d).

Zero vectors have no direction, so cosine is undefined: they are an InputError naming the row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import InputError
from curate.scores.base import Column, ScoreMethod
from curate.scores.dedup_config import DEFAULT_THRESHOLD, EXACT_MAX, DedupConfig, check_threshold  # noqa: F401  (re-exported)

TOL = 1e-6
TIE = 1e-6
BLOCK_BYTES = 256 << 20
COLUMNS = {
    "dup_of": "id of the kept row of this row's near-duplicate group; null for kept rows and rows in no group",
    "dup_keep": "true for the kept row of each group and rows in no group; false for the other group members",
    "dup_sim": "cosine to the nearest other row, in [-1, 1]; higher = more redundant",
    "dup_group": "near-duplicate group number (ordered by smallest id); null for rows in no group",
}
AGAINST_COLUMNS = {
    "contam_of": "id of the nearest evaluation row when cosine >= threshold; null otherwise",
    "contam_sim": "cosine to the nearest evaluation row, in [-1, 1]; higher = more contaminated",
}


def parse_keep_by(spec: str, columns) -> tuple[str, bool]:
    """``COLUMN`` (keep the highest value) or ``COLUMN:min`` / ``COLUMN:max`` -> (column, keep_highest).

    ``columns``: the names available; an unknown column or suffix is an InputError listing them.
    """
    name, _, way = str(spec).rpartition(":") if str(spec).endswith((":min", ":max")) else (str(spec), "", "max")
    if name not in columns and ":" in str(spec) and str(spec).rpartition(":")[0] in columns:
        raise InputError(f"--dedup-keep-by {spec!r}: the suffix must be :min or :max, not "
                         f"{':' + str(spec).rpartition(':')[2]!r}")
    if name not in columns:
        raise InputError(f"--dedup-keep-by {spec!r}: no column {name!r}; choose one of "
                         f"{', '.join(sorted(columns))} (append :min to keep the lowest)")
    return name, way == "max"


def normalise(X: np.ndarray, ids: list[str], where: str = "embedding") -> np.ndarray:
    """Rows of ``X`` (n, d) scaled to unit L2 norm, float32; a zero row is an InputError naming its id."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1)
    zero = np.flatnonzero(~(norms > 0))
    if len(zero):
        raise InputError(f"{where}: row id {ids[zero[0]]!r} has a zero embedding ({len(zero)} such rows); "
                         "cosine is undefined, drop or re-embed them")
    return np.ascontiguousarray(X / norms[:, None], dtype=np.float32)


def _block_rows(n: int, block_bytes: int) -> int:
    return max(1, min(n, block_bytes // (4 * max(n, 1))))


def pairs_exact(Xn: np.ndarray, threshold: float, block_bytes: int = BLOCK_BYTES):
    """All pairs i < j with cos >= threshold - TOL, by brute force in row blocks.

    Returns ``(i, j, nearest)``: int64 arrays of linked pairs and float32 (n,) cosine of each row
    to its nearest other row (-inf when n == 1). Memory: one block of at most ``block_bytes``.
    """
    n = len(Xn)
    B = _block_rows(n, block_bytes)
    nearest = np.full(n, -np.inf, np.float32)
    I, J = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for s in range(0, n, B):
        S = Xn[s:s + B] @ Xn.T
        rows = np.arange(len(S))
        S[rows, s + rows] = -np.inf  # a row is not its own duplicate
        nearest[s:s + B] = S.max(axis=1)
        r, c = np.nonzero(S >= threshold - TOL)
        r = r + s
        keep = r < c
        I.append(r[keep])
        J.append(c[keep])
    return np.concatenate(I).astype(np.int64), np.concatenate(J).astype(np.int64), nearest


def pairs_ivf(Xn: np.ndarray, threshold: float, order: np.ndarray, nprobe: int = 16, seed: int = 0,
              query_rows: int = 65536):
    """Approximate ``pairs_exact`` with a faiss IVF index (``order``: row indices sorted by id).

    The coarse quantiser is trained on a seeded sample drawn from the id order, so the index does
    not depend on input row order. Returns ``(i, j, nearest, params)``; links found in one
    direction only still count (the graph is undirected).
    """
    import faiss

    n, d = Xn.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants >= 39 training points per list
    rng = np.random.default_rng(seed)
    sample = order[np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))]
    quantiser = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantiser, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(Xn[sample])
    index.add(Xn)
    index.nprobe = min(nprobe, nlist)
    nearest = np.full(n, -np.inf, np.float32)
    I, J = [], []
    for s in range(0, n, query_rows):
        q = Xn[s:s + query_rows]
        D, L = index.search(q, 2)
        rows = np.arange(s, s + len(q))
        # With exact copies the row itself need not come first: take the best hit that is not it.
        D = np.where(L == rows[:, None], -np.inf, D)
        D = np.where(L < 0, -np.inf, D)
        nearest[s:s + len(q)] = D.max(axis=1)
        hot = np.flatnonzero(nearest[s:s + len(q)] >= threshold - TOL)
        if len(hot) == 0:
            continue
        lims, _, labels = index.range_search(q[hot], threshold - TOL)
        src = np.repeat(rows[hot], np.diff(lims).astype(np.int64))
        keep = src != labels
        I.append(src[keep])
        J.append(labels[keep])
    i = np.concatenate(I).astype(np.int64) if I else np.zeros(0, np.int64)
    j = np.concatenate(J).astype(np.int64) if J else np.zeros(0, np.int64)
    return i, j, nearest, {"index": "IVFFlat", "nlist": nlist, "nprobe": int(index.nprobe), "seed": seed}


def groups(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label (n,) of the undirected graph with edges (i, j); -1 for isolated rows."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    size = np.bincount(comp, minlength=n)
    return np.where(size[comp] > 1, comp, -1)


def _rank_key(values: np.ndarray | None, keep_highest: bool) -> np.ndarray | None:
    if values is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    v = v if keep_highest else -v
    return np.where(np.isnan(v), -np.inf, v)  # null/NaN rank last


def _kept(members: np.ndarray, ids: np.ndarray, Xn: np.ndarray, key: np.ndarray | None) -> int:
    members = members[np.argsort(ids[members], kind="stable")]  # id order: arithmetic independent of row order
    if key is None:
        c = Xn[members].astype(np.float64).mean(axis=0)
        score = Xn[members].astype(np.float64) @ (c / np.linalg.norm(c))
        # float32 inputs: cosines within TIE of the best are equal (every pair is such a tie)
        return int(members[np.flatnonzero(score >= score.max() - TIE)[0]])
    return int(members[np.argmax(key[members])])  # argmax takes the first maximum: the smallest id


def dedup_columns(ids, X: np.ndarray, threshold: float, keep_by=None, keep_highest: bool = True,
                  against: tuple[list[str], np.ndarray] | None = None, exact_max: int = EXACT_MAX,
                  nprobe: int = 16, seed: int = 0, block_bytes: int = BLOCK_BYTES,
                  threads: int | None = None) -> tuple[dict[str, pa.Array], dict[str, Any]]:
    """Near-duplicate columns for a pool (see the module docstring for each column's meaning).

    ids: n unique strings; X: (n, d) embeddings (normalised here); threshold: cosine in (0, 1];
    keep_by: optional (n,) values (null/NaN allowed) choosing each group's kept row;
    against: optional (eval_ids, eval_X) adding ``contam_of``/``contam_sim``;
    exact_max: largest pool searched exactly, beyond it faiss IVF with ``nprobe`` lists probed,
    its coarse k-means seeded by ``seed`` and run on ``threads`` OpenMP threads (None: faiss's default).
    Returns ``(columns, provenance)``: pyarrow arrays of length n, and the parameters used.
    """
    t = check_threshold(threshold)
    ids = np.asarray([str(v) for v in ids], dtype=object)
    n = len(ids)
    if n == 0:
        raise InputError("the pool has no rows; nothing to deduplicate")
    if len(X) != n:
        raise InputError(f"embedding: {len(X)} rows for {n} ids")
    Xn = normalise(X, list(ids))
    order = np.argsort(ids, kind="stable")
    if n <= exact_max:
        i, j, nearest = pairs_exact(Xn, t, block_bytes)
        search = {"search": "exact", "block_bytes": block_bytes}
    else:
        import faiss

        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads or before)
        try:
            i, j, nearest, params = pairs_ivf(Xn, t, order, nprobe=nprobe, seed=seed)
        finally:
            faiss.omp_set_num_threads(before)  # leave the process as it was
        search = {"search": "ivf", **params}
    comp = groups(n, i, j)
    key = _rank_key(keep_by, keep_highest)

    dup_group = np.full(n, -1, np.int64)
    dup_of = np.full(n, None, dtype=object)
    members_of: dict[int, list[int]] = {}
    for r in order:  # id order: group numbers follow each group's smallest id
        if comp[r] >= 0:
            members_of.setdefault(int(comp[r]), []).append(int(r))
    for g, members in enumerate(members_of.values()):
        members = np.asarray(members)
        dup_group[members] = g
        kept = _kept(members, ids, Xn, key)
        dup_of[members] = ids[kept]
        dup_of[kept] = None

    cols = {
        "dup_of": pa.array(dup_of.tolist(), pa.string()),
        "dup_keep": pa.array(np.equal(dup_of, None).astype(bool), pa.bool_()),
        "dup_sim": pa.array(nearest.astype(np.float64), pa.float64(), mask=~np.isfinite(nearest)),
        "dup_group": pa.array(dup_group, pa.int64(), mask=dup_group < 0),
    }
    prov: dict[str, Any] = {"method": "dedup", "threshold": t, "tolerance": TOL, "linkage": "single",
                            "keep": "keep_by" if keep_by is not None else "nearest_centroid",
                            "keep_highest": keep_highest if keep_by is not None else None,
                            "groups": len(members_of), "duplicates": int(sum(len(m) - 1 for m in members_of.values())),
                            **search}
    if against is not None:
        eval_ids, eval_X = against
        cols.update(against_columns(Xn, eval_ids, eval_X, t, block_bytes))
        prov["against_rows"] = len(eval_ids)
        prov["contaminated"] = int(len(cols["contam_of"]) - cols["contam_of"].null_count)
    return cols, prov


def against_columns(Xn: np.ndarray, eval_ids, eval_X: np.ndarray, threshold: float,
                    block_bytes: int = BLOCK_BYTES) -> dict[str, pa.Array]:
    """``contam_of``/``contam_sim`` of normalised pool rows ``Xn`` (n, d) against an evaluation set, exactly."""
    eval_ids = np.asarray([str(v) for v in eval_ids], dtype=object)
    if len(eval_ids) == 0:
        raise InputError("--dedup-against: the evaluation file has no rows")
    En = normalise(eval_X, list(eval_ids), where="--dedup-against embedding")
    if En.shape[1] != Xn.shape[1]:
        raise InputError(f"--dedup-against: embedding dimension {En.shape[1]} differs from the pool's "
                         f"{Xn.shape[1]}; embed both with the same model")
    order = np.argsort(eval_ids, kind="stable")  # argmax keeps the first maximum: the smallest id
    En, eval_ids = En[order], eval_ids[order]
    n = len(Xn)
    best = np.empty(n, np.float32)
    arg = np.empty(n, np.int64)
    B = _block_rows(max(len(En), 1), block_bytes)
    for s in range(0, n, B):
        S = Xn[s:s + B] @ En.T
        arg[s:s + B] = S.argmax(axis=1)
        best[s:s + B] = S[np.arange(len(S)), arg[s:s + B]]
    hit = best >= threshold - TOL
    return {
        "contam_of": pa.array(np.where(hit, eval_ids[arg], None).tolist(), pa.string()),
        "contam_sim": pa.array(best.astype(np.float64), pa.float64()),
    }


def _numeric(column: pa.ChunkedArray | pa.Array, name: str) -> np.ndarray:
    t = column.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise InputError(f"--dedup-keep-by {name}: column type {t} is not numeric; choose a score column")
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def dedup_score(pool, ids, X: np.ndarray, pool_provenance: dict, threshold: float = DEFAULT_THRESHOLD,
                keep_by: str | None = None, against=None, new_columns: dict[str, pa.Array] | None = None,
                seed: int = 0, threads: int | None = None) -> tuple[dict[str, pa.Array], dict[str, Any]]:
    """File-level entry of the score step: resolve ``--dedup-keep-by`` and ``--dedup-against``, then
    ``dedup_columns``.

    pool: the pool Parquet (``keep_by`` is read from it unless the same run computed that column,
    given in ``new_columns``); ids, X: its ids and (n, d) embeddings in file order;
    against: path of an evaluation Parquet from `curate embed` (same embedding model).
    Returns the columns and the provenance record every column shares.
    """
    from curate.io.parquet import open_parquet, read_embeddings, read_provenance, read_table
    from curate.io.provenance import fingerprint

    t = check_threshold(threshold)
    values, highest, column = None, True, None
    if keep_by is not None:
        new_columns = new_columns or {}
        column, highest = parse_keep_by(keep_by, set(open_parquet(pool).schema_arrow.names) | set(new_columns))
        src = new_columns[column] if column in new_columns else read_table(pool, columns=[column]).column(column)
        values = _numeric(src, column)
    eval_set = None
    if against is not None:
        names = open_parquet(against).schema_arrow.names
        for col in ("id", "embedding"):
            if col not in names:
                raise InputError(f"{against}: no {col!r} column; produce the evaluation file with `curate embed`")
        a = ((pool_provenance or {}).get("embedding_model") or {}).get("sha256")
        b = (read_provenance(against).get("embedding_model") or {}).get("sha256")
        if a and b and a != b:
            raise InputError(f"{against}: embedded with a different model than {pool}; re-embed one of them")
        eval_set = (read_table(against, columns=["id"]).column("id").to_pylist(), read_embeddings(against))
    cols, prov = dedup_columns(ids, X, t, keep_by=values, keep_highest=highest, against=eval_set, seed=seed,
                               threads=threads)
    if column is not None:
        prov["keep_by"] = column
    if against is not None:
        prov["against"] = fingerprint(against)
    return cols, prov


class Dedup(ScoreMethod):
    """``--method dedup``: near-duplicate groups and, with an evaluation set, contamination."""

    name = "dedup"
    summary = "semantic near-duplicates (cosine >= --dedup-threshold): dup_of, dup_keep, dup_sim, dup_group"
    columns = (
        Column("dup_of", pa.string(), COLUMNS["dup_of"]),
        Column("dup_keep", pa.bool_(), COLUMNS["dup_keep"]),
        Column("dup_sim", pa.float64(), COLUMNS["dup_sim"]),
        Column("dup_group", pa.int64(), COLUMNS["dup_group"]),
        Column("contam_of", pa.string(), AGAINST_COLUMNS["contam_of"]),
        Column("contam_sim", pa.float64(), AGAINST_COLUMNS["contam_sim"]),
    )

    def check(self, cfg) -> None:
        cfg.dedup.check()

    def compute(self, ctx) -> dict[str, pa.Array]:
        d = ctx.cfg.dedup
        # keep_by is read from the pool file: a column scored in this same run is not visible yet.
        cols, ctx.details[self.name] = dedup_score(ctx.pool, ctx.ids, ctx.X, ctx.prov, d.threshold, d.keep_by, d.against,
                                                   seed=ctx.cfg.seed, threads=ctx.runtime.threads)
        return cols

    def provenance(self, ctx) -> dict[str, Any]:
        return {**super().provenance(ctx), **ctx.details[self.name]}

    def summarise(self, cols: dict[str, pa.Array]) -> dict[str, Any]:
        out = {"dup_groups": len(pc.unique(cols["dup_group"].drop_null())),
               "duplicates": len(cols["dup_of"]) - cols["dup_of"].null_count}
        if "contam_of" in cols:
            out["contaminated"] = len(cols["contam_of"]) - cols["contam_of"].null_count
        return out
