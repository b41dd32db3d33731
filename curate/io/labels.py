"""The ``label`` column: presence, nulls, and a stable class order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import InputError


def require_labels(table: pa.Table, path, what: str) -> list[Any]:
    """The labels as Python values; InputError if the column is missing or has a null or NaN."""
    if "label" not in table.column_names:
        raise InputError(f"{path}: no 'label' column; {what} needs labels (curate embed --label-column)")
    labels = table.column("label")
    missing = labels.is_null()
    if pa.types.is_floating(labels.type):
        # A NaN label would otherwise become a class of its own per row (NaN != NaN).
        missing = pc.or_kleene(missing, pc.is_nan(labels)).fill_null(True)
    if pc.any(missing).as_py():
        bad = table.column("id")[int(np.flatnonzero(missing.to_numpy(zero_copy_only=False))[0])]
        raise InputError(
            f"{path}: label is null or NaN for id {bad}; {what} needs a label on every row: "
            "label the row, or re-embed with --drop-unlabelled"
        )
    return labels.to_pylist()


def class_order(labels: list[Any]) -> list[Any]:
    """Sorted distinct labels (by type name first, so mixed types still sort deterministically)."""
    return sorted(set(labels), key=lambda v: (str(type(v)), v))
