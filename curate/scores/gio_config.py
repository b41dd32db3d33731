"""``GioConfig``: the options of a GIO run and their ranges, apart from the estimators so that
``curate score --help`` reads its defaults without importing numpy, pyarrow or faiss."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from curate.checks import float_in, int_in
from curate.errors import InputError

ESTIMATORS = ("reference", "knn")
V_INITS = ("mean", "jump", "prev_opt")
MAX_COUNT = 10**9


@dataclass(frozen=True)
class GioConfig:
    """Options of a GIO run; every field is recorded in provenance.

    With ``estimator="reference"`` the defaults equal those of the reference package
    ``grad-info-opt`` 0.1.2. The default estimator is ``knn``: on multi-mode targets it covers
    every mode where the reference's estimate piles onto the central one (README, GIO estimators).
    """

    estimator: str = "knn"  # "knn" (k-NN KL estimate, the default: README) or "reference" (the package's)
    k: int = 5
    budget: int | None = None  # stop after this many selections
    max_iter: int = 100  # reference: max_iter=100 selects max_iter + 1 points
    v_init: str = "mean"  # "mean" | "jump" | "prev_opt"
    lr: float = 0.01
    first_iter_steps: int = 150
    later_steps: int = 50
    init_points: int = 20  # random unit-norm points seeded into W, never returned
    eps: float = 1e-8
    clusters: int | None = None  # quantised mode: k-means pool and target into this many centroids
    seed: int = 0

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise InputError(f"--gio-estimator {self.estimator}: expected one of {', '.join(ESTIMATORS)}")
        if self.v_init not in V_INITS:
            raise InputError(f"--gio-v-init {self.v_init}: expected one of {', '.join(V_INITS)}")
        int_in("--gio-k", self.k, 1, 10_000)
        if self.budget is not None:
            int_in("--budget", self.budget, 1, MAX_COUNT)
        int_in("--max-iter", self.max_iter, 0, MAX_COUNT)
        float_in("--gio-lr", self.lr, 0.0, 1e6, lo_open=True)
        int_in("--gio-first-steps", self.first_iter_steps, 0, MAX_COUNT)
        int_in("--gio-steps", self.later_steps, 0, MAX_COUNT)
        int_in("--gio-init-points", self.init_points, 0, 1_000_000)
        float_in("GIO eps", self.eps, 0.0, 1.0, lo_open=True)
        if self.clusters is not None:
            int_in("--clusters", self.clusters, 2, MAX_COUNT)
        int_in("--seed", self.seed, 0, 2**31 - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
