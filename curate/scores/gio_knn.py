"""GIO toward the k-NN estimate of KL(target || selected), greedily and exactly.

The standard estimate (Wang, Kulkarni & Verdu 2009) at neighbour rank l, for n target points X
and m selected points W in dimension d:

    D_l(W) = (d / n) * sum_i log((nu_l(i) + eps) / (rho_l(i) + eps)) + log(m / (n - 1))

with rho_l(i) the distance from x_i to its l-th nearest other target point and nu_l(i) to its
l-th nearest selected point. This mode lowers the mean over ranks l = 1..k,
``D(W) = mean_l D_l(W)``, a consistent estimate of the same divergence. The mean matters for a
greedy method: under D_k alone a target mode with no selected points yet cannot be reached one
pick at a time (its targets' k-th distances only shrink once k points sit there), so the greedy
stalls after a few picks; under the mean, the first point in a new mode already shortens its
targets' first-neighbour distances. The standard D_k is reported alongside. Unlike the
reference package's all-pairs average, both depend on which target points a candidate would
become a near neighbour of, given what is already selected, so selection spreads over every
mode of the target.

Adding c changes the neighbour lists only where ``r_ic = ||x_i - c|| < nu_k(i)``, and the sum
over ranks telescopes, so the gain is

    gain(c) = (d / (n k)) * sum_{i: r_ic < nu_k(i)} [log(nu_k(i) + eps) - log(r_ic + eps)]
              - log((m + 1) / m)

Two conventions make the estimate defined from the first pick and usable on overlapping sets:

- distances are capped at R, the diameter of the target set: a selected point farther from a
  target point than any two target points are from each other counts as no neighbour. Before
  k points are selected, the missing neighbours sit at R, and the size term is
  ``log(max(m, k) / (n - 1))``. So a pool far from the target lowers nothing and selects nothing.
- a candidate identical to a target point (distance below 1e-6 of the median target spacing)
  is not that point's neighbour, as rho excludes the point itself: otherwise a pool that
  contains the target would be rewarded for copying it point by point.

Bookkeeping: each target keeps its k nearest selected distances, sorted, updated exactly after
every pick. The natural stop: no candidate lowers D or the budget.

Candidate evaluation is exact ("dense": every candidate against every target) when
n_candidates * n_targets <= ``dense_limit``; beyond that it uses faiss neighbour lists: each
target's L nearest candidates. A target whose current nu_k(i) is at most the distance to its
L-th listed candidate is covered exactly (no unlisted candidate can be closer than nu_k(i));
for the others, improvements by unlisted candidates are left out of the gain: the
approximation, counted in provenance ("uncovered target-steps"). The lists are built one block
of the pool at a time (a faiss index per block, results merged), so besides the pool itself
memory grows by 45 bytes per candidate: ``memory_bytes`` states the peak.
"""

from __future__ import annotations

import math

import numpy as np

from curate.errors import InputError
from curate.scores.gio_selection import BLOCK_ROWS, Selection, blocks

DENSE_LIMIT = 20_000_000
LIST_SIZE = 128


def _dist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    return np.sqrt(np.maximum(d2, 0.0))


def target_diameter(X: np.ndarray, chunk: int = 2048) -> float:
    return max(float(_dist(X[s:s + chunk], X).max()) for s in range(0, len(X), chunk))


def target_radii(X: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """(n, k): distances from each target point to its 1st..k-th nearest other target points."""
    n = len(X)
    if n < k + 1:
        raise InputError(f"the target set has {n} points; the k-NN estimate with k = {k} needs at least {k + 1}")
    out = np.empty((n, k))
    for s in range(0, n, chunk):
        D = _dist(X[s:s + chunk], X)
        D[np.arange(len(D)), np.arange(s, s + len(D))] = np.inf  # exclude the point itself
        out[s:s + chunk] = np.sort(np.partition(D, k - 1, axis=1)[:, :k], axis=1)
    return out


def knn_estimate(X: np.ndarray, W: np.ndarray, k: int = 5, eps: float = 1e-8, ranks: str = "mean",
                 cap: float = np.inf) -> float:
    """D(W) computed directly (m >= k): the mean over ranks 1..k (``ranks="mean"``) or D_k (``"k"``),
    neighbour distances capped at ``cap``."""
    n, d = X.shape
    m = len(W)
    if m < k:
        raise ValueError("the k-NN estimate needs at least k selected points")
    nu = np.minimum(np.sort(np.partition(_dist(X, W), k - 1, axis=1)[:, :k], axis=1), cap)
    rho = target_radii(X, k)
    per_rank = d / n * (np.log(nu + eps) - np.log(rho + eps)).sum(0) + math.log(m / (n - 1))
    return float(per_rank.mean() if ranks == "mean" else per_rank[-1])


class KnnState:
    """Each target's k nearest selected distances (sorted), and the estimate they give."""

    def __init__(self, X: np.ndarray, k: int, eps: float, R: float):
        self.X, self.k, self.eps = X, k, eps
        self.n, self.d = X.shape
        self.x_sq = (X * X).sum(1)
        radii = target_radii(X, k)
        self.log_rho = np.log(radii + eps)  # (n, k)
        self.same = 1e-6 * float(np.median(radii[:, 0]))  # closer than this: the same point
        self.near = np.full((self.n, k), R)  # phantom neighbours until k real ones exist
        self.m = 0

    def value(self, ranks: str = "mean") -> float:
        """The estimate now: mean over ranks, or rank k alone."""
        diff = np.log(self.near + self.eps) - self.log_rho
        base = self.d / self.n * (diff.sum() / self.k if ranks == "mean" else diff[:, -1].sum())
        return float(base + math.log(max(self.m, self.k) / (self.n - 1)))

    def size_penalty(self) -> float:
        """Change of the size term from m to m + 1."""
        return 0.0 if self.m + 1 <= self.k else math.log((self.m + 1) / self.m)

    def add(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Insert a selected point at distances ``r`` (n,); return the changed rows and their old lists."""
        rows = np.flatnonzero(r < self.near[:, -1])
        old = self.near[rows].copy()
        near = np.concatenate([old, r[rows, None]], axis=1)
        near.sort(axis=1)
        self.near[rows] = near[:, : self.k]
        self.m += 1
        return rows, old


class _Evaluator:
    """Gains of every candidate: dense (exact) or from faiss neighbour lists.

    The gain vector is a sum of per-target contributions, and a pick changes only the targets it
    became a k-nearest neighbour of, so after each pick only those targets' contributions are
    subtracted and re-added: O(changed targets x candidates) instead of O(targets x candidates).
    """

    def __init__(self, G: np.ndarray, X: np.ndarray, dense_limit: int, list_size: int, block_rows: int = BLOCK_ROWS):
        self.G, self.X = G, X
        self.N, self.n = len(G), len(X)
        parts = blocks(self.N, block_rows)
        # 4,096 rows at a time: a float64 copy of the whole pool would be 8 n d bytes.
        self.g_sq = np.concatenate([(G[a:a + 4096].astype(np.float64) ** 2).sum(1) for a in range(0, self.N, 4096)]) if self.N else np.zeros(0)
        self.x_sq = (X * X).sum(1)
        self.dense = self.N * self.n <= dense_limit
        self.uncovered = 0
        self.total: np.ndarray | None = None
        if self.dense:
            self.D = np.empty((self.n, self.N))  # (n, N)
            for a, b in parts:
                self.D[:, a:b] = _dist(X, G[a:b].astype(np.float64))
            self.logD = None  # filled on first use (needs eps)
        else:
            self.L = min(list_size, self.N)
            self.cj = self._lists(parts)  # (n, L)
            # Exact float64 distances for the listed pairs (faiss works in float32), a few
            # thousand pairs at a time: all at once is an (n, L, d) float64 temporary.
            self.r = np.empty(self.cj.shape)
            step = max(1, 16384 // self.L)
            for s in range(0, self.n, step):
                cj = self.cj[s:s + step]
                self.r[s:s + step] = np.sqrt(np.maximum(self.x_sq[s:s + step, None] + self.g_sq[cj] - 2.0 * np.einsum(
                    "nd,nld->nl", X[s:s + step], G[cj].astype(np.float64)), 0.0))
            self.last = self.r.max(axis=1)

    def _lists(self, parts: list[tuple[int, int]]) -> np.ndarray:
        """Each target's L nearest candidates (n, L) int64: a faiss search per block of the pool, merged."""
        import faiss

        queries = np.ascontiguousarray(self.X, dtype=np.float32)
        heap = faiss.ResultHeap(self.n, self.L)
        for a, b in parts:
            index = faiss.IndexFlatL2(self.G.shape[1])
            index.add(np.ascontiguousarray(self.G[a:b], dtype=np.float32))
            dist, idx = index.search(queries, min(self.L, b - a))
            heap.add_result(dist, idx + a)
            del index
        heap.finalize()
        return heap.I

    def exclude_same(self, tol: float) -> None:
        """A candidate identical to a target point is not its neighbour (rho excludes the point itself)."""
        self.same = tol
        if self.dense:
            self.D[self.D <= tol] = np.inf
        else:
            self.r[self.r <= tol] = np.inf

    def _rows(self, rows: np.ndarray, near: np.ndarray, state: "KnnState") -> np.ndarray:
        """Summed contributions of the target rows ``rows`` given their neighbour lists ``near``."""
        nk = near[:, -1:]
        lnk = np.log(nk + state.eps)
        if self.dense:
            if self.logD is None:
                with np.errstate(invalid="ignore"):
                    self.logD = np.log(self.D + state.eps)
            c = np.where(self.D[rows] < nk, lnk - self.logD[rows], 0.0)
            return c.sum(0)
        r = self.r[rows]
        c = np.where(r < nk, lnk - np.log(r + state.eps), 0.0)
        return np.bincount(self.cj[rows].reshape(-1), weights=c.reshape(-1), minlength=self.N)

    def gains(self, state: "KnnState") -> np.ndarray:
        if self.total is None:
            self.total = np.zeros(self.N)
            for s in range(0, self.n, 256):
                rows = np.arange(s, min(s + 256, self.n))
                self.total += self._rows(rows, state.near[rows], state)
        if not self.dense:
            self.uncovered += int((state.near[:, -1] > self.last).sum())
        return state.d / (state.n * state.k) * self.total

    def update(self, rows: np.ndarray, old_near: np.ndarray, state: "KnnState") -> None:
        if self.total is not None and len(rows):
            self.total -= self._rows(rows, old_near, state)
            self.total += self._rows(rows, state.near[rows], state)

    def column(self, j: int) -> np.ndarray:
        if self.dense:
            return self.D[:, j]
        g = self.G[j].astype(np.float64)
        r = np.sqrt(np.maximum(self.g_sq[j] + self.x_sq - 2.0 * (self.X @ g), 0.0))
        r[r <= self.same] = np.inf
        return r


def memory_bytes(n: int, m: int, d: int, L: int = LIST_SIZE, block_rows: int = BLOCK_ROWS,
                 dense_limit: int = DENSE_LIMIT) -> int:
    """Peak bytes of a knn-mode selection plus ``gain_alone`` over a float32 pool of n rows, target m, dimension d.

    The pool itself (4 n d, held by the caller) is included; the interpreter and libraries are
    not. Persistent: 45 n (squared norms, running gains and their per-step copies, the used
    mask, the order column) and 8 m d (the target in float64). Then the larger of the
    transient phases: building the neighbour lists, a faiss index over one block of the pool
    (4 B d) and the per-block and merged results (40 m L, 16 m L of which stay), or the target's
    own neighbour radii and diameter (32 m min(m, 2048)). Below ``dense_limit`` candidate-target
    pairs the lists are replaced by the exact (m, n) distances and their logs (16 n m), built
    one block of the pool at a time (24 m min(n, B)).
    """
    fixed = 4 * n * d + 45 * n + 8 * m * d
    radii = 32 * m * min(m, 2048)
    if n * m <= dense_limit:
        return fixed + 16 * n * m + max(24 * m * min(n, block_rows), radii)
    L = min(L, n)
    block = max((b - a for a, b in blocks(n, block_rows)), default=0)
    return fixed + 16 * m * L + max(4 * block * d + 24 * m * L, radii)


def _setup(pool, target, config):
    G = np.asarray(pool)
    X = np.asarray(target, dtype=np.float64)
    k, eps = config.k, config.eps
    ev = _Evaluator(G, X, getattr(config, "dense_limit", DENSE_LIMIT), getattr(config, "list_size", LIST_SIZE),
                    getattr(config, "block_rows", BLOCK_ROWS))
    state = KnnState(X, k, eps, target_diameter(X))
    ev.exclude_same(state.same)
    return G, X, ev, state


def select_knn(pool: np.ndarray, target: np.ndarray, config) -> Selection:
    """Greedy selection lowering the k-NN KL estimate (see the module docstring)."""
    G, X, ev, state = _setup(pool, target, config)
    N = len(G)
    budget = N if config.budget is None else min(config.budget, N)
    used = np.zeros(N, dtype=bool)
    order: list[int] = []
    trajectory: list[float] = []
    trajectory_k: list[float] = []
    stop = "budget" if config.budget is not None else "pool exhausted"
    while len(order) < budget:
        gains = ev.gains(state) - state.size_penalty()
        gains[used] = -np.inf
        j = int(np.argmax(gains))  # ties: lowest index
        if not np.isfinite(gains[j]):
            stop = "pool exhausted"
            break
        if gains[j] <= 0:
            stop = "no candidate lowers the estimate"
            break
        rows, old = state.add(ev.column(j))
        ev.update(rows, old, state)
        used[j] = True
        order.append(j)
        trajectory.append(state.value())
        trajectory_k.append(state.value("k"))
    extra = {"evaluation": "dense (exact)" if ev.dense else f"faiss neighbour lists (L = {ev.L})",
             "uncovered_target_steps": ev.uncovered, "final_m": state.m,
             "estimate": "mean over ranks 1..k of the Wang, Kulkarni & Verdu (2009) k-NN estimates of KL(target || selected)",
             "kl_trajectory_rank_k": trajectory_k}
    return Selection(np.array(order, dtype=np.int64), trajectory, stop, extra, state=state, evaluator=ev)


def gain_alone(pool: np.ndarray, target: np.ndarray, config, selection: Selection | None = None) -> np.ndarray:
    """How much adding each candidate alone to the final selection would lower the estimate."""
    if selection is not None and selection.evaluator is not None:
        state, ev = selection.state, selection.evaluator
    else:
        _, _, ev, state = _setup(pool, target, config)
    return ev.gains(state) - state.size_penalty()
