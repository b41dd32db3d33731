"""GIO with the estimate of the reference package (``grad-info-opt`` 0.1.2), computed incrementally.

The reference's estimate of KL(X || W), X the n target points and W the m selected points
(including the seed points), in dimension d:

    D(W) = d * mean_{i,j} log(||x_i - w_j|| + eps) - d * mean_i log(rho_k(i) + eps)
           + mean_{l=1..m} log(k m / (l (n - 1)))

with rho_k(i) the distance from x_i to its k-th nearest other target point. Distances follow
the reference: squared distances from ``|x|^2 + |w|^2 - 2 x.w`` clipped to [1e-10, 1e20].

Everything W contributes is the running sum ``S = sum_{i,j} log(||x_i - w_j|| + eps)``, so
adding a point costs one O(n d) pass instead of recomputing every distance matrix. The
gradient of D with respect to a new point v, ``d / (n (m + 1)) * sum_i (v - x_i) /
(r_i (r_i + eps))``, depends on W only through m.
"""

from __future__ import annotations

import math

import numpy as np

from curate.errors import InputError
from curate.scores.gio_selection import Selection

CLIP_LO, CLIP_HI = 1e-10, 1e20


def sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Squared distances the way the reference computes them (expanded form, clipped)."""
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    return np.clip(d2, CLIP_LO, CLIP_HI)


def target_term(X: np.ndarray, k: int, eps: float, chunk: int = 2048) -> float:
    """``d * mean_i log(rho_k(i) + eps)``: the target-only part of D, computed once."""
    n, d = X.shape
    if n < k + 1:
        raise InputError(f"the target set has {n} points; the KL estimator needs more than k = {k}")
    logs = []
    for s in range(0, n, chunk):
        d2 = sq_dists(X[s:s + chunk], X)
        # k + 1 smallest includes the point itself (clipped to 1e-10), which the reference discards.
        kth = np.partition(d2, k, axis=1)[:, k]
        logs.append(np.log(np.sqrt(kth) + eps))
    return d * float(np.mean(np.concatenate(logs)))


def log_dist_sums(X: np.ndarray, C: np.ndarray, eps: float, chunk: int = 4096) -> np.ndarray:
    """For each row c of C: ``sum_i log(||x_i - c|| + eps)`` over the target X (float64)."""
    out = np.empty(len(C))
    for s in range(0, len(C), chunk):
        out[s:s + chunk] = np.log(np.sqrt(sq_dists(C[s:s + chunk], X)) + eps).sum(1)
    return out


def size_term(m: int, n: int, k: int) -> float:
    """``mean_{l=1..m} log(k m / (l (n - 1)))`` in closed form."""
    return math.log(k * m / (n - 1)) - math.lgamma(m + 1) / m


def estimate(X: np.ndarray, W: np.ndarray, k: int = 5, eps: float = 1e-8) -> float:
    """The reference estimate D(W), computed directly (for checks and small inputs)."""
    n, d = X.shape
    return d * float(np.mean(np.log(np.sqrt(sq_dists(X, W)) + eps))) - target_term(X, k, eps) + size_term(len(W), n, k)


def gradient(X: np.ndarray, v: np.ndarray, m: int, eps: float, x_sq: np.ndarray | None = None) -> np.ndarray:
    """Gradient of D(W + {v}) with respect to v, for |W| = m.

    ``sum_i w_i (v - x_i) = v sum_i w_i - X^T w``: two matrix-vector products, no (n, d) temporary.
    """
    n, d = X.shape
    x_sq = (X * X).sum(1) if x_sq is None else x_sq
    d2 = x_sq + v @ v - 2.0 * (X @ v)
    r = np.sqrt(np.clip(d2, CLIP_LO, CLIP_HI))
    w = np.where(d2 > CLIP_LO, 1.0 / (r * (r + eps)), 0.0)  # the clip has zero gradient
    return d / (n * (m + 1)) * (v * w.sum() - X.T @ w)


def initial_points(d: int, count: int, seed: int) -> np.ndarray:
    """The reference's seed set: uniform in [-1, 1]^d, each scaled to unit norm.

    Drawn from ``np.random.RandomState(seed)``: the same numbers the reference draws after
    ``np.random.seed(seed)`` (it uses NumPy's global legacy generator).
    """
    if count == 0:
        return np.zeros((0, d))
    U = np.random.RandomState(seed).uniform(low=-1, high=1, size=(count, d))
    norms = np.linalg.norm(U, axis=1, keepdims=True)
    return U / np.where(norms == 0, 1, norms)


class _Nearest:
    """Nearest not-yet-chosen candidate by Euclidean distance: exact, ties to the lowest index.

    One query at a time is a matrix-vector product over the candidates; chosen rows are masked
    out rather than deleted, so indices stay those of the pool.
    """

    def __init__(self, G: np.ndarray):
        self.G = G
        self.g_sq = (G * G).sum(1)
        self.used = np.zeros(len(G), dtype=bool)

    def take(self, v: np.ndarray) -> int:
        dist = self.g_sq - 2.0 * (self.G @ v)
        dist[self.used] = np.inf
        best = int(np.argmin(dist))
        if not np.isfinite(dist[best]):
            raise InputError("every candidate has been selected")
        self.used[best] = True
        return best


class ReferenceState:
    """Incremental bookkeeping of D(W): the running sum S, |W| and the constant target term."""

    def __init__(self, X: np.ndarray, W0: np.ndarray, k: int, eps: float):
        self.X, self.k, self.eps = X, k, eps
        self.n, self.d = X.shape
        self.T = target_term(X, k, eps)
        self.S = float(log_dist_sums(X, W0, eps).sum()) if len(W0) else 0.0
        self.m = len(W0)

    def value(self, S: float | None = None, m: int | None = None) -> float:
        S = self.S if S is None else S
        m = self.m if m is None else m
        return self.d * S / (self.n * m) - self.T + size_term(m, self.n, self.k)

    def with_point(self, c: float) -> float:
        """D after adding a point whose log-distance sum to X is ``c``."""
        return self.value(self.S + c, self.m + 1)

    def add(self, c: float) -> None:
        self.S += c
        self.m += 1


def select_reference(pool: np.ndarray, target: np.ndarray, config) -> Selection:
    """Run GIO as the reference package does (stop rule 'increase', no resets)."""
    G = np.asarray(pool, dtype=np.float64)
    X = np.asarray(target, dtype=np.float64)
    n, d = X.shape
    W0 = initial_points(d, config.init_points, config.seed)
    state = ReferenceState(X, W0, config.k, config.eps)
    if state.m == 0:
        raise InputError("GIO with the reference estimate needs --gio-init-points >= 1 (the estimate is undefined for an empty set)")
    rng = np.random.default_rng(config.seed)
    mean = X.mean(0)
    x_sq = (X * X).sum(1)

    def start() -> np.ndarray:
        if config.v_init == "jump":
            return X[rng.integers(n)].copy()
        return mean.copy()

    if config.v_init not in ("mean", "jump", "prev_opt"):
        raise InputError(f"--gio-v-init {config.v_init}: expected mean, jump or prev_opt")
    v = start() if config.v_init != "prev_opt" else mean.copy()
    g0 = gradient(X, v, state.m, config.eps)
    gnorm = float(np.linalg.norm(g0))
    scale = float(np.linalg.norm(v)) / gnorm if gnorm > 0 else 1.0
    nearest = _Nearest(G)
    prev = state.value()
    trajectory = [prev]
    order: list[int] = []
    limit = config.max_iter + 1  # the reference accepts iterations 0..max_iter
    if config.budget is not None:
        limit = min(limit, config.budget)
    stop = "max_iter" if config.budget is None or config.budget > config.max_iter + 1 else "budget"
    limit = min(limit, len(G))
    if limit == len(G) and stop == "max_iter":
        stop = "pool exhausted"
    i = 0
    while len(order) < limit:
        steps = config.first_iter_steps if i == 0 else config.later_steps
        for _ in range(steps):
            v = v - config.lr * scale * gradient(X, v, state.m, config.eps, x_sq)
        j = nearest.take(v)
        d2 = np.clip(nearest.g_sq[j] + x_sq - 2.0 * (X @ G[j]), CLIP_LO, CLIP_HI)
        c = float(np.log(np.sqrt(d2) + config.eps).sum())
        new = state.with_point(c)
        if config.v_init != "prev_opt":
            v = start()
        if new - prev > 0:
            stop = "estimate increased"
            break
        state.add(c)
        order.append(j)
        trajectory.append(new)
        prev = new
        i += 1
    return Selection(np.array(order, dtype=np.int64), trajectory, stop,
                     {"scale_factor": scale, "seed_points": int(len(W0)), "final_m": state.m}, state=state)


def gain_alone(pool: np.ndarray, target: np.ndarray, config, selection: Selection | None = None) -> np.ndarray:
    """How much adding each candidate alone to the final selected set W would lower D.

    ``D(W) - D(W + {c})``; a decreasing function of c's mean log distance to the target, so it
    ranks candidates the same way whatever W is.
    """
    X = np.asarray(target, dtype=np.float64)
    n, d = X.shape
    m = config.init_points + (len(selection.order) if selection is not None else 0)
    m = max(m, 1)
    S = selection.state.S if selection is not None and selection.state is not None else None
    c = log_dist_sums(X, np.asarray(pool, dtype=np.float64), config.eps)
    if S is None:
        # No bookkeeping to hand: use the mean candidate as the typical member of W.
        S = float(c.mean()) * m
    before = d * S / (n * m) + size_term(m, n, config.k)
    after = d * (S + c) / (n * (m + 1)) + size_term(m + 1, n, config.k)
    return before - after
