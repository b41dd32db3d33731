"""The one result type of both GIO estimators."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

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
