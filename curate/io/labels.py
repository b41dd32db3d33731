"""The ``label`` column: presence, nulls, and a stable class order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from curate.errors import InputError


def require_labels(table: pa.Table, path, what: str) -> list[Any]:
    """The labels as Python values; InputError if the column is missing or has a null."""
    if "label" not in table.column_names:
        raise InputError(f"{path}: no 'label' column; {what} needs labels (curate embed --label-column)")
    labels = table.column("label")
    if labels.null_count:
        bad = table.column("id")[int(np.flatnonzero(labels.is_null().to_numpy(zero_copy_only=False))[0])]
        raise InputError(f"{path}: label is null for id {bad}; {what} needs a label on every row: drop the row or label it")
    return labels.to_pylist()


def class_order(labels: list[Any]) -> list[Any]:
    """Sorted distinct labels (by type name first, so mixed types still sort deterministically)."""
    return sorted(set(labels), key=lambda v: (str(type(v)), v))
