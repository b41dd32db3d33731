"""Are two files' vectors comparable? Every embedding option that changes the vectors must match."""

from __future__ import annotations

from typing import Any

from curate.errors import InputError

# Fields that change the vectors; path and batch_size do not (the same weights may live anywhere).
VECTOR_FIELDS = ("sha256", "name", "dimension", "modality", "normalize", "image_size", "preprocessing", "pooling",
                 "max_seq_length", "backend")


def check_same_embedding(a: dict[str, Any] | None, b: dict[str, Any] | None, a_where: str, b_where: str, hint: str) -> None:
    """InputError naming the first differing field, both values and what to re-run; absent fields are not compared.

    ``a``, ``b``: the ``embedding_model`` records of two provenances. When both hold a sha256 and
    they agree, ``name`` may still differ (the same weights under another name) and is skipped.
    """
    if not a or not b:
        return
    same_weights = a.get("sha256") and a.get("sha256") == b.get("sha256")
    for f in VECTOR_FIELDS:
        if f == "name" and same_weights:
            continue
        if f in a and f in b and a[f] != b[f]:
            raise InputError(f"{a_where} and {b_where} were embedded differently: embedding_model.{f} is "
                             f"{a[f]!r} vs {b[f]!r}; {hint}")
