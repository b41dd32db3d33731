"""Commit several outputs together: all appear, or none changes.

Local stand-in until curate/io/atomic.py offers a multi-output commit (branch io-safety).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from curate.io.atomic import atomic_dir, atomic_path


@contextlib.contextmanager
def commit_all(targets: list[tuple[Path, bool]]) -> Iterator[list[Path]]:
    """Yield a temporary path per (path, is_directory); rename them all into place only if the body succeeds.

    Every temporary is built before any rename, so a failure while writing leaves every target as it was.
    """
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_dir(p) if is_dir else atomic_path(p)) for p, is_dir in targets]
