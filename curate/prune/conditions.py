"""``--keep`` conditions: ``COLUMN OP VALUE`` or ``COLUMN in [LOW, HIGH]``.

``OP`` is one of ``> >= < <= == !=``; a bound is a number (negative and scientific notation are
fine: rho is signed), ``true``/``false`` for boolean columns, a quantile ``qF`` of that column
with F in [0, 1] (``q0.25``), resolved globally or per class over its non-null, non-NaN values,
or ``null`` (only with ``==``/``!=``, any column type: ``dup_of == null``). Interval bounds
are inclusive; an interval whose low bound exceeds its high bound is malformed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from curate.errors import InputError

_NAME = r"[A-Za-z_][\w.\-]*"
_CMP = re.compile(rf"^\s*({_NAME})\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_IN = re.compile(rf"^\s*({_NAME})\s+in\s+\[\s*([^,\]\s]+)\s*,\s*([^,\]\s]+)\s*\]\s*$")
_HELP = "write e.g. 'el2n in [q0.1, q0.9]', 'rho > 0' or 'grand <= 2.5'"


@dataclass(frozen=True)
class Bound:
    """A number, a boolean, or the quantile ``q`` of the column (resolved later)."""

    value: float | bool | None = None
    quantile: float | None = None
    null: bool = False

    @property
    def is_quantile(self) -> bool:
        return self.quantile is not None

    def __str__(self) -> str:
        if self.null:
            return "null"
        return f"q{self.quantile:g}" if self.is_quantile else str(self.value).lower() if isinstance(self.value, bool) else f"{self.value:g}"


@dataclass(frozen=True)
class Condition:
    text: str
    column: str
    op: str  # one of > >= < <= == != in
    low: Bound
    high: Bound | None = None  # for "in"

    def bounds(self) -> list[Bound]:
        return [self.low] + ([self.high] if self.high is not None else [])

    @property
    def is_null_test(self) -> bool:
        return self.low.null


def _bound(token: str, expr: str) -> Bound:
    t = token.strip()
    if t.lower() == "null":
        return Bound(null=True)
    if t.lower() in ("true", "false"):
        return Bound(value=t.lower() == "true")
    if t[:1] in ("q", "Q"):
        try:
            q = float(t[1:])
        except ValueError:
            raise InputError(f"--keep {expr!r}: {t!r} is not a quantile; {_HELP}") from None
        if not 0.0 <= q <= 1.0:
            raise InputError(f"--keep {expr!r}: quantile {t} is outside [0, 1]; use q0 to q1 (e.g. q0.25)")
        return Bound(quantile=q)
    try:
        v = float(t)
    except ValueError:
        raise InputError(f"--keep {expr!r}: {t!r} is neither a number nor a quantile like q0.25; {_HELP}") from None
    if v != v:
        raise InputError(f"--keep {expr!r}: NaN is not a usable bound")
    return Bound(value=v)


def parse_condition(expr: str) -> Condition:
    """Parse one ``--keep`` expression; raise InputError saying what to write instead."""
    m = _IN.match(expr)
    if m:
        col, lo, hi = m.groups()
        low, high = _bound(lo, expr), _bound(hi, expr)
        if low.null or high.null:
            raise InputError(f"--keep {expr!r}: null cannot bound an interval; write '{col} == null' or '{col} != null'")
        a, b = (low.quantile, high.quantile) if low.is_quantile and high.is_quantile else (low.value, high.value)
        if low.is_quantile == high.is_quantile and a > b:
            raise InputError(f"--keep {expr!r}: malformed condition, the interval is empty ({lo} > {hi}); write the low bound first")
        return Condition(expr, col, "in", low, high)
    m = _CMP.match(expr)
    if m:
        col, op, val = m.groups()
        bound = _bound(val, expr)
        if bound.null and op not in ("==", "!="):
            raise InputError(f"--keep {expr!r}: null compares only with == or != (e.g. '{col} == null')")
        return Condition(expr, col, op, bound)
    raise InputError(f"--keep {expr!r}: not a condition; {_HELP}")
