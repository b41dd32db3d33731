"""Range checks for numeric options, done once in the library's dataclasses (the CLI only parses).

Each raises one InputError line naming the flag, the value and the accepted range, so a
negative, zero, huge, NaN or infinite value never reaches the numerics.
"""

from __future__ import annotations

import math

from curate.errors import InputError


def int_in(flag: str, value: int, lo: int, hi: int) -> int:
    """``value`` if ``lo <= value <= hi`` (an int, not a bool), else InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InputError(f"{flag} {value}: expected an integer in [{lo}, {hi}]")
    return value


def float_in(flag: str, value: float, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` if finite and within the (half-)open range, else InputError."""
    v = float(value)
    ok = math.isfinite(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    if not ok:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise InputError(f"{flag} {value}: expected a finite number in {left}{lo:g}, {hi:g}{right}")
    return v
