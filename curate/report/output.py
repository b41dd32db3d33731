"""Committing the page and its PNG folder together, and replacing only what ``curate`` wrote.

Both are built in one hidden temporary directory beside the output and then renamed into place:
the PNG folder first, the page last, so a page on disk always has its PNGs. (The io-safety
branch's multi-output commit can replace this at merge.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from curate.errors import InputError
from curate.report.html import GENERATOR

MARKER = ".curate-report"


def files_dir(output: Path) -> Path:
    return output.with_name(output.stem + "_files")


def _ours_html(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return GENERATOR.encode() in f.read(4096)
    except OSError:
        return False


def check(output: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse outputs that equal an input, exist without --overwrite, or were not written by curate."""
    pngs = files_dir(output)
    for p in inputs:
        if output.resolve() == p.resolve() or pngs.resolve() == p.resolve():
            raise InputError(f"-o {output}: is an input of this command; choose another output name")
    if output.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"-o {output}: the report is HTML; give a name ending in .html")
    if output.is_dir():
        raise InputError(f"-o {output}: is a directory; give the HTML file name")
    if output.exists():
        if not overwrite:
            raise InputError(f"{output}: output already exists; pass --overwrite to replace it")
        if not _ours_html(output):
            raise InputError(f"{output}: exists and was not written by `curate report`; refusing to replace it")
    if pngs.exists() or pngs.is_symlink():
        if not pngs.is_dir() or pngs.is_symlink():
            raise InputError(f"{pngs}: exists and is not a folder curate wrote; move it away")
        if not overwrite:
            raise InputError(f"{pngs}: already exists; pass --overwrite to replace it")
        if any(pngs.iterdir()) and not (pngs / MARKER).is_file():
            raise InputError(f"{pngs}: holds files curate did not write; refusing to replace it")
    parent = output.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"-o {output}: {parent} is not a directory")


@contextlib.contextmanager
def commit(output: Path) -> Iterator[tuple[Path, Path]]:
    """Yield (temporary page path, temporary PNG folder); on success move both into place."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    except OSError as e:
        raise InputError(f"-o {output}: cannot write there ({e.strerror or e})") from None
    page, pngs = tmp / output.name, tmp / files_dir(output).name
    pngs.mkdir()
    (pngs / MARKER).write_text("written by curate report; --overwrite may replace this folder\n")
    try:
        yield page, pngs
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(pngs, 0o777 & ~mask)
        os.chmod(page, 0o666 & ~mask)
        final = files_dir(output)
        old = tmp / "old"
        if final.exists():
            os.replace(final, old)
        os.replace(pngs, final)
        os.replace(page, output)
    except OSError as e:
        raise InputError(f"-o {output}: cannot write there ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
