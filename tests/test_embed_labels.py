"""``require_labels`` (called by il and score) refuses null and NaN labels, naming the id."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from curate.errors import InputError
from curate.io.labels import require_labels


@pytest.mark.parametrize("labels,bad", [([1.0, math.nan, 2.0], "b"), (["x", None, "y"], "b"), ([None, 1, 2], "a")])
def test_missing_labels_are_refused_naming_the_id(labels, bad):
    t = pa.table({"id": ["a", "b", "c"], "label": labels})
    with pytest.raises(InputError, match=rf"pool.parquet: label is null or NaN for id {bad};.*--drop-unlabelled"):
        require_labels(t, "pool.parquet", "el2n")


def test_present_labels_keep_their_values_and_type():
    t = pa.table({"id": ["a", "b"], "label": pa.array([3, 1], pa.int16())})
    assert require_labels(t, "p", "el2n") == [3, 1]
