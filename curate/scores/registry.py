"""Every score method by name: ``curate score --method``, its help, its summary and ``report``'s known columns.

Adding a method: one module with a ``ScoreMethod`` subclass, one line here and its name and
summary in ``curate.scores.catalog`` (what ``--help`` reads without importing the methods).
"""

from __future__ import annotations

from curate.scores.base import Column, ScoreMethod
from curate.scores.catalog import MethodName  # noqa: F401  (re-exported)
from curate.scores.dedup import Dedup
from curate.scores.el2n import El2n
from curate.scores.gio import Gio
from curate.scores.grand import Grand
from curate.scores.label_quality import LabelQuality
from curate.scores.rho import Rho

METHODS: dict[str, ScoreMethod] = {m.name: m for m in (El2n(), Grand(), Rho(), Gio(), LabelQuality(), Dedup())}


def get(name: str) -> ScoreMethod:
    from curate.errors import InputError

    if name not in METHODS:
        raise InputError(f"--method {name}: unknown; choose from {', '.join(METHODS)}")
    return METHODS[name]


def known_columns() -> dict[str, Column]:
    """Every column any method may write -> its ``Column`` (Arrow type, meaning with range and direction)."""
    return {c.name: c for m in METHODS.values() for c in m.columns}


def column_meanings() -> dict[str, str]:
    """Column name -> one-line meaning (for ``report``)."""
    return {name: c.meaning for name, c in known_columns().items()}


def methods_needing(need: str, names) -> str:
    """The requested methods that need ``need``, for messages: ``"el2n and rho"``."""
    hit = [n for n in names if need in METHODS[n].needs]
    return " and ".join([", ".join(hit[:-1]), hit[-1]] if len(hit) > 1 else hit) or "this method"
