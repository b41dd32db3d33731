"""GIO (Everaert & Potts, ICLR 2024): KL-driven selection toward a target set."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate.errors import InputError
from curate.io.fs import as_path
from curate.scores.base import TARGET, Column, ScoreContext, ScoreMethod
from curate.scores.gio_config import ESTIMATORS, MAX_COUNT, V_INITS, GioConfig  # noqa: F401  (re-exported)
from curate.scores.gio_selection import BLOCK_ROWS, blocks


class PoolRows:
    """The pool's embeddings as float32 (n, d) blocks of ``rows`` rows, in pool order.

    From an in-memory array (blocks are views, checked for non-finite values) or from a Parquet
    path, whose ``embedding`` column is streamed and validated like ``read_embeddings``: then at
    most one block (4 * rows * d bytes), one 4,096-row Arrow batch and a 1 MiB read buffer are
    held, never the pool.
    Iterable more than once (each pass re-reads the file).
    """

    READ_ROWS = 4096

    def __init__(self, pool: np.ndarray | str | Path, rows: int = BLOCK_ROWS):
        self.rows = rows
        if not isinstance(pool, np.ndarray):  # a path or URI
            from curate.io.parquet import open_parquet

            self.path, self.array = as_path(pool), None
            pf = open_parquet(self.path)
            if "embedding" not in pf.schema_arrow.names:
                raise InputError(f"{self.path}: no 'embedding' column; produce the file with `curate embed`")
            self.n = pf.metadata.num_rows
            kind = pf.schema_arrow.field("embedding").type
            self.d = kind.list_size if pa.types.is_fixed_size_list(kind) else self._first_width(pf)
        else:
            self.path, self.array = None, pool
            self.n, self.d = pool.shape

    def _first_width(self, pf) -> int:
        for batch in pf.iter_batches(batch_size=1, columns=["embedding"]):
            return len(batch.column(0)[0])
        return 0

    def _convert(self, column, start: int) -> np.ndarray:
        from curate.io.parquet import embedding_array

        try:
            return embedding_array(column, where=f"{self.path}: embedding")
        except InputError as e:
            # Re-number the row from the Arrow batch to the file.
            msg, m = str(e), re.search(r"row (\d+)", str(e))
            raise InputError(msg.replace(m.group(0), f"row {start + int(m.group(1))}", 1) if m else msg) from None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)``; ``block`` is float32 C-contiguous (stop - start, d), valid until the
        next block is asked for (its memory is reused): copy what must outlive it."""
        if self.array is not None:
            for start, stop in blocks(self.n, self.rows):
                block = np.ascontiguousarray(self.array[start:stop], dtype=np.float32)
                bad = ~np.isfinite(block).all(axis=1)
                if bad.any():
                    raise InputError(f"GIO: non-finite value in the pool embedding at row {start + int(np.flatnonzero(bad)[0])}")
                yield start, block
            return
        from curate.io.parquet import open_stream

        parts = blocks(self.n, self.rows)
        bounds = iter(parts)
        start, stop = next(bounds, (0, 0))
        # One buffer for every block (views of it): one block in memory, never two.
        whole = np.empty((max((b - a for a, b in parts), default=0), self.d), dtype=np.float32)
        buf = whole[: stop - start]
        filled = read = 0
        # A buffered stream reads a column chunk page by page: by default pyarrow holds the whole
        # decompressed chunk, i.e. the whole pool when the file has one row group (curate's do up to 1M rows).
        pf = open_stream(self.path)
        for batch in pf.iter_batches(batch_size=self.READ_ROWS, columns=["embedding"]):
            mat = self._convert(batch.column(0), read)
            if mat.shape[1] != self.d:
                raise InputError(f"{self.path}: embedding at row {read} has {mat.shape[1]} dimensions, row 0 has {self.d}")
            read += len(mat)
            while len(mat):
                take = min(len(mat), len(buf) - filled)
                buf[filled:filled + take] = mat[:take]
                filled, mat = filled + take, mat[take:]
                if filled == len(buf):
                    yield start, buf
                    start, stop = next(bounds, (self.n, self.n))
                    buf, filled = whole[: stop - start], 0

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), d): the pool rows ``rows`` (distinct, any order), in that order."""
        out = np.empty((len(rows), self.d), dtype=np.float32)
        by_row = np.argsort(rows, kind="stable")
        sorted_rows = rows[by_row]
        for start, block in self:
            lo, hi = np.searchsorted(sorted_rows, [start, start + len(block)])
            out[by_row[lo:hi]] = block[sorted_rows[lo:hi] - start]
        return out


def _check(pool: PoolRows, target: np.ndarray, config: GioConfig) -> None:
    if len(target) == 0:
        raise InputError("GIO: the target set is empty; pass a --target file with embeddings")
    if len(target) < config.k + 1:
        raise InputError(f"GIO: the target set has {len(target)} points; the k-NN estimate with --gio-k {config.k} needs at least {config.k + 1}")
    if pool.n == 0:
        raise InputError("GIO: the pool is empty")
    if pool.d != target.shape[1]:
        raise InputError(f"GIO: pool has {pool.d} dimensions, target {target.shape[1]}; embed both with the same model")
    bad = ~np.isfinite(target).all(axis=1)
    if bad.any():
        raise InputError(f"GIO: non-finite value in the target embedding at row {int(np.flatnonzero(bad)[0])}")
    if config.budget is not None and config.budget > pool.n:
        raise InputError(f"--budget {config.budget}: larger than the pool ({pool.n} rows)")


def _engine(config: GioConfig):
    if config.estimator == "knn":
        from curate.scores import gio_knn

        return gio_knn.select_knn, gio_knn.gain_alone
    from curate.scores import gio_reference

    return gio_reference.select_reference, gio_reference.gain_alone


# faiss's own cap (ClusteringParameters.max_points_per_centroid): above k * 256 points it trains on
# a sample of that size, drawn with rand_perm(n, seed); curate draws the same sample itself, so
# only the sample is ever held and the centroids equal those of faiss on the whole pool.
SAMPLE_PER_CENTROID = 256
READER_BYTES = 150 * 2**20  # see quantised_memory_bytes


def kmeans(data: np.ndarray | PoolRows, k: int, seed: int, niter: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """faiss k-means: (centroids (k, d) float64, assignment (n,) int64). Empty clusters are dropped.

    Trains on a seeded sample of min(n, 256 k) rows (faiss's own sample: same centroids as
    training on all rows) and assigns block by block. Memory: 4 * min(n, 256 k) * d bytes for the
    sample, one block of rows, and 8 n bytes for the assignment; nothing n x k or n x d.
    """
    import faiss

    rows = data if isinstance(data, PoolRows) else PoolRows(data)
    k = min(k, rows.n)
    size = k * SAMPLE_PER_CENTROID
    if rows.n > size:
        perm = np.empty(rows.n, dtype=np.int32)
        faiss.rand_perm(faiss.swig_ptr(perm), rows.n, seed)
        sample = rows.take(perm[:size].astype(np.int64))
        del perm
    else:
        sample = rows.take(np.arange(rows.n)) if rows.array is None else np.ascontiguousarray(rows.array, dtype=np.float32)
    # min_points_per_centroid=1: small targets are normal here, and faiss would warn on stderr.
    km = faiss.Kmeans(rows.d, k, niter=niter, seed=seed, verbose=False, spherical=False,
                      min_points_per_centroid=1, max_points_per_centroid=SAMPLE_PER_CENTROID)
    km.train(sample)
    del sample
    assign = np.empty(rows.n, dtype=np.int64)
    for start, block in rows:
        assign[start:start + len(block)] = km.index.search(block, 1)[1][:, 0]
    used = np.unique(assign)
    remap = -np.ones(k, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return km.centroids[used].astype(np.float64), remap[assign]


def quantised_memory_bytes(n: int, clusters: int, d: int, block_rows: int = BLOCK_ROWS) -> int:
    """Peak bytes of the quantised mode over a pool streamed from Parquet (n rows, dimension d).

    Not counted: the interpreter and libraries, the target and its k-means (small), and the
    selection among centroids. The k-means sample (S = min(n, 256 clusters) rows, 4 S d bytes,
    plus 36 S of sample indices and faiss's assignment) and one block of rows (4 B d, B at most
    65,536 + 4,095 rows); per pool
    row 4 bytes of the seeded permutation while the sample is drawn, then 21 bytes (assignment,
    order column, scores, selected mask) that make up the output. Plus a constant 150 MiB: the
    Parquet reader's buffers and the conversion of one 4,096-row Arrow batch, which pyarrow's
    allocator keeps (measured at d = 384: peak minus the other terms, 30k and 150k rows).
    """
    S = min(n, SAMPLE_PER_CENTROID * clusters)
    block = max((b - a for a, b in blocks(n, block_rows)), default=0)
    return 4 * S * d + 36 * S + 4 * block * d + 25 * n + READER_BYTES


def trajectories(points: np.ndarray, target: np.ndarray, config: GioConfig) -> dict[str, list[float]]:
    """Both estimates after each of ``points`` (rows in pick order) is added, for provenance.

    The reference estimate is taken over the picks alone (without the reference's random seed
    points); the k-NN estimates (mean over ranks 1..k, and rank k) follow gio_knn's conventions.
    """
    from curate.scores.gio_knn import KnnState, target_diameter
    from curate.scores.gio_reference import ReferenceState

    X = np.asarray(target, dtype=np.float64)
    ref = ReferenceState(X, np.zeros((0, X.shape[1])), config.k, config.eps)
    knn = KnnState(X, config.k, config.eps, target_diameter(X))
    x_sq = (X * X).sum(1)
    out: dict[str, list[float]] = {"reference": [], "knn": [], "knn_rank_k": []}
    for w in np.asarray(points, dtype=np.float64):
        d2 = np.maximum(x_sq + w @ w - 2.0 * (X @ w), 0.0)
        ref.add(float(np.log(np.sqrt(np.clip(d2, 1e-10, 1e20)) + config.eps).sum()))
        r = np.sqrt(d2)
        r[r <= knn.same] = np.inf
        knn.add(r)
        out["reference"].append(ref.value())
        out["knn"].append(knn.value())
        out["knn_rank_k"].append(knn.value("k"))
    return out


def score_gio(pool: np.ndarray | str | Path, target: np.ndarray, config: GioConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Select from ``pool`` (n, d) toward ``target`` (m, d).

    ``pool``: an array, or the path of a Parquet file with an ``embedding`` column. The quantised
    mode streams a path block by block (memory independent of n but for 25 bytes per row); the
    other modes read it whole (see ``gio_knn.memory_bytes`` for the knn mode's peak).

    Returns the columns ``gio_selected`` (bool), ``gio_order`` (int32, -1 where not selected;
    the caller writes -1 as null) and ``gio_score`` (float64, higher = adding it alone lowers
    the estimate more), and a provenance dict (config, KL trajectory, stop reason).

    Quantised mode (``clusters``): k-means the pool and the target separately, select among pool
    centroids toward the target centroids, then expand each chosen centroid to its members in
    pick order (members share their centroid's ``gio_order``). ``budget`` then caps examples:
    expansion stops after ``budget`` members (the last cluster cut in pool order).
    """
    # The pool stays in its own dtype (float32 from Parquet): a float64 copy of a 1M-row pool is 3 GB.
    target = np.asarray(target, dtype=np.float64)
    rows = PoolRows(pool)
    _check(rows, target, config)
    select, gain = _engine(config)
    n = rows.n
    order_col = np.full(n, -1, dtype=np.int32)
    prov: dict[str, Any] = {"config": config.to_dict(), "estimator": config.estimator}
    if config.clusters:
        pc, p_assign = kmeans(rows, config.clusters, config.seed)
        tc, _ = kmeans(target, config.clusters, config.seed + 1)
        if len(tc) < config.k + 1:
            raise InputError(f"--clusters {config.clusters}: the target gives {len(tc)} centroids; need more than --gio-k {config.k}")
        sel = select(pc, tc, replace(config, budget=None) if config.budget else config)
        taken = 0
        for step, c in enumerate(sel.order):
            idx = np.flatnonzero(p_assign == c)
            if config.budget is not None:
                idx = idx[: max(0, config.budget - taken)]
            order_col[idx] = step
            taken += len(idx)
            if config.budget is not None and taken >= config.budget:
                break
        scores = gain(pc, tc, config, sel)[p_assign]
        both = trajectories(pc[sel.order], tc, config)
        prov["quantised"] = {"pool_centroids": int(len(pc)), "target_centroids": int(len(tc)),
                             "centroids_selected": int(len(sel.order)), "examples_selected": int((order_col >= 0).sum()),
                             "kmeans": f"faiss, 25 iterations, trained on a sample of min(n, {SAMPLE_PER_CENTROID} x clusters) rows, "
                                       "seed = config.seed (pool) and config.seed + 1 (target)",
                             "budget_unit": "examples"}
    else:
        if rows.array is None:
            from curate.io.parquet import read_embeddings

            pool = read_embeddings(rows.path)
        else:
            for _ in rows:  # non-finite check, block by block
                pass
        sel = select(pool, target, config)
        order_col[sel.order] = np.arange(len(sel.order), dtype=np.int32)
        scores = gain(pool, target, config, sel)
        both = trajectories(np.asarray(pool)[sel.order], target, config)
    prov.update({"kl_trajectory": [float(v) for v in sel.trajectory], "stop_reason": sel.stop_reason,
                 "kl_trajectories_of_picks": both,
                 "n_selected": int((order_col >= 0).sum()), **sel.extra})
    return {"gio_selected": order_col >= 0, "gio_order": order_col, "gio_score": np.asarray(scores, dtype=np.float64)}, prov


class Gio(ScoreMethod):
    name = "gio"
    summary = "GIO: greedy selection toward a --target set's distribution (no labels needed)"
    columns = (
        Column("gio_selected", pa.bool_(), "true = chosen by GIO's selection toward the target set"),
        Column("gio_order", pa.int32(), "pick order, 0 = first; null where not selected; lower = picked earlier"),
        Column("gio_score", pa.float64(), "drop of the KL estimate if this row alone were added to the selection; higher = closer to the target"),
    )
    needs = frozenset({TARGET})

    def check(self, cfg) -> None:
        if not cfg.target:
            raise InputError("--method gio needs --target TARGET.parquet (embeddings of the distribution you want)")

    def compute(self, ctx: ScoreContext) -> dict[str, pa.Array]:
        # The quantised mode streams the pool from its file; the others need it whole.
        pool = ctx.pool if ctx.cfg.gio.clusters else ctx.X
        cols, ctx.details["gio"] = score_gio(pool, ctx.target, ctx.cfg.gio)
        order = np.asarray(cols["gio_order"], dtype=np.int32)
        return {"gio_selected": pa.array(np.asarray(cols["gio_selected"], dtype=bool)),
                "gio_order": pa.array(order, pa.int32(), mask=order < 0),
                "gio_score": pa.array(np.asarray(cols["gio_score"], dtype=np.float64))}

    def provenance(self, ctx: ScoreContext) -> dict[str, Any]:
        from curate.io.provenance import fingerprint

        return {"method": "gio", "target": fingerprint(ctx.cfg.target), **ctx.details["gio"], **ctx.common}

    def summarise(self, cols: dict[str, pa.Array]) -> dict[str, Any]:
        return {"gio_selected": int(np.asarray(cols["gio_selected"]).sum())}
