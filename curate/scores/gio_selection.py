"""The one result type of both GIO estimators, and the row blocks they read the pool in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

# Rows of the pool per block: 100 MB of float32 at d = 384. A multiple of faiss's 4096-query and
# 1024-database BLAS blocks, so a search done block by block computes the same float32 distances
# as one search over the whole pool.
BLOCK_ROWS = 65536

if TYPE_CHECKING:
    from curate.scores.gio_knn import KnnState, _Evaluator
    from curate.scores.gio_reference import ReferenceState


@dataclass
class Selection:
    """A GIO selection and the estimator state after its last pick (for ``gain_alone``).

    ``order``: pool indices in pick order (int64). ``trajectory``: the estimate after each
    accepted pick. ``extra``: JSON-able details for provenance. ``state`` / ``evaluator``: not
    recorded; they let ``gain_alone`` score every candidate against the final set without redoing
    the selection (``evaluator`` only for the k-NN estimator).
    """

    order: np.ndarray
    trajectory: list[float]
    stop_reason: str
    extra: dict[str, Any] = field(default_factory=dict)
    state: "KnnState | ReferenceState | None" = None
    evaluator: "_Evaluator | None" = None


def blocks(n: int, rows: int = BLOCK_ROWS) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in blocks of ``rows``.

    A tail shorter than 4096 rows joins the block before it: faiss searches fewer than 20
    queries without BLAS, and a tail of whole 4096-row BLAS blocks keeps the distances equal to
    those of one search over all rows.
    """
    if rows < 1:
        raise ValueError("rows must be >= 1")
    starts = list(range(0, n, rows))
    if len(starts) > 1 and n - starts[-1] < 4096:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]
