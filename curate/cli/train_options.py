"""Range checks for the options of the commands that train a head (`il train`, `train`).

Each check raises one InputError naming the option, the value and the accepted range, so a
user mistake is `curate: error: ...` and exit 2, never a traceback from deep inside torch.
The ranges are also written in each option's ``--help``.
"""

from __future__ import annotations

import math

from curate.errors import InputError

MAX_SEED = 2**32 - 1
MAX_EPOCHS = 1_000_000
MAX_WIDTH = 1 << 16  # hidden units per layer
MAX_DEPTH = 64
MAX_BATCH = 1 << 24


def int_range(option: str, value: int, low: int, high: int) -> int:
    """``low <= value <= high`` or an InputError naming ``option``."""
    if not low <= value <= high:
        raise InputError(f"{option} {value}: must be an integer from {low} to {high:,}")
    return value


def positive(option: str, value: float, allow_zero: bool = False) -> float:
    """A finite number above 0 (or at least 0 with ``allow_zero``)."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{option} {value}: must be a finite number {'>= 0' if allow_zero else '> 0'}")
    return value


def open_unit(option: str, value: float) -> float:
    """A fraction strictly between 0 and 1."""
    if not (math.isfinite(value) and 0 < value < 1):
        raise InputError(f"{option} {value}: must be between 0 and 1 (exclusive)")
    return value


def head_options(hidden: list[int], depth: int | None, dropout: float, lr: float, weight_decay: float,
                 seed: int) -> tuple[int, ...]:
    """Check the head and optimiser options shared by `il train` and `train`; returns the hidden sizes."""
    if not hidden:
        raise InputError("--hidden: give at least one size")
    for h in hidden:
        int_range("--hidden", h, 1, MAX_WIDTH)
    if depth is not None:
        int_range("--depth", depth, 1, MAX_DEPTH)
    if not (math.isfinite(dropout) and 0 <= dropout < 1):
        raise InputError(f"--dropout {dropout}: must be in [0, 1)")
    positive("--lr", lr)
    positive("--weight-decay", weight_decay, allow_zero=True)
    int_range("--seed", seed, 0, MAX_SEED)
    return tuple(hidden) if depth is None else tuple([hidden[0]] * depth)


def threads_option(threads: int) -> int:
    return int_range("--threads", threads, 1, 1024)
