"""Committing the page and its PNG folder together (all or none), replacing only what curate wrote.

Both outputs go through :mod:`curate.io.atomic`: :func:`check` validates and locks them before
any work, :func:`commit` builds them aside and renames them in as one group, so a page on disk
always has its PNGs and an interrupted run is finished or undone by the next one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterable, Iterator

from curate.errors import InputError
from curate.io.atomic import atomic_group, check_distinct, check_output


def files_dir(output: Path) -> Path:
    """The PNG folder beside the page: ``report.html`` -> ``report_files/``."""
    return output.with_name(output.stem + "_files")


def check(output: Path, inputs: Iterable[Path], overwrite: bool) -> None:
    """Refuse outputs that equal an input, exist without --overwrite, or that curate did not write."""
    inputs = list(inputs)
    pngs = files_dir(output)
    check_distinct(output, pngs)
    check_output(output, overwrite, inputs=inputs)
    if output.is_dir():
        raise InputError(f"{output}: is a directory; give the HTML file name")
    if output.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"{output}: the report is HTML; give a name ending in .html")
    if pngs.exists() and not pngs.is_dir():
        raise InputError(f"{pngs}: exists and is not a folder; move it away or choose another -o")
    check_output(pngs, overwrite, inputs=inputs)


@contextlib.contextmanager
def commit(output: Path) -> Iterator[tuple[Path, Path]]:
    """Yield (temporary page path, temporary PNG folder); on success both replace the outputs."""
    with atomic_group([output, files_dir(output)]) as (page, pngs):
        pngs.mkdir()
        yield page, pngs
