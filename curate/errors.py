"""Errors that reach the user as one line on stderr and an exit code.

``InputError`` (exit 2) is for anything the user can fix: a missing file, a missing column, a
malformed expression, an output that already exists. The CLI turns it into
``curate: error: <message>``; any other exception is a bug (exit 1, with a request to report it).
"""

from __future__ import annotations


class CurateError(Exception):
    """Base class: an error with a one-line, user-facing message and an exit code."""

    exit_code = 1

    def __init__(self, message: str):
        # One line: a multi-line message would be cut by log scrapers and CI summaries.
        super().__init__(" ".join(str(message).split()))


class InputError(CurateError):
    """Bad input or usage: a file, column, value or option the user must change (exit 2)."""

    exit_code = 2

