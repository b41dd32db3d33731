"""``DedupConfig``: the options of ``--method dedup`` and their checks, apart from the search so
that ``curate score --help`` reads its defaults without importing numpy, pyarrow or faiss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curate.errors import InputError

DEFAULT_THRESHOLD = 0.95
EXACT_MAX = 50_000


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float in (0, 1]; anything else (nan, <= 0, > 1) is an InputError."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"--dedup-threshold {threshold!r} is not a number; give a cosine in (0, 1], e.g. 0.95")
    if not (0.0 < t <= 1.0):  # also false for nan
        raise InputError(f"--dedup-threshold {threshold!r} is outside (0, 1]; give a cosine such as 0.95")
    return t


@dataclass(frozen=True)
class DedupConfig:
    """Options of ``--method dedup`` (``ScoreConfig.dedup``): see ``dedup_columns``."""

    threshold: float = DEFAULT_THRESHOLD
    keep_by: str | None = None  # COLUMN, COLUMN:max or COLUMN:min of the pool file
    against: str | None = None  # evaluation Parquet from `curate embed`
    exact_max: int = EXACT_MAX
    nprobe: int = 16

    def check(self) -> None:
        """Refuse bad options before any file is read (InputError, one line)."""
        check_threshold(self.threshold)
        if self.against is not None and not Path(self.against).is_file():
            raise InputError(f"--dedup-against {self.against}: no such file; give a Parquet from `curate embed`")
