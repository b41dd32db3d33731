"""A delivered SIGTERM or SIGINT is never lost, even when Python swallows the exception it raised.

Python runs a signal handler between two bytecodes of whatever frame is current. When that frame
is a ``__del__``, a weakref or a GC callback, the exception the handler raises is printed as
"Exception ignored in ..." and dropped, and the run would go on to commit its output. So the
handler also records the signal here; long loops call :func:`check` once per batch, and every
commit (``curate.io.atomic``) calls it just before it renames or copies into place: a recorded
signal is raised again there, and an interrupted run never commits.

Only the CLI installs the handlers (:func:`install`); in a library call nothing is ever recorded
and :func:`check` costs one global read.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_received: int | None = None


def requested() -> int | None:
    """The signal number delivered to this process (the first one), or None."""
    return _received


def check() -> None:
    """Raise again for a recorded signal: ``KeyboardInterrupt`` for SIGINT (exit 130),
    ``SystemExit(128 + signum)`` otherwise (SIGTERM: 143). Nothing when none was delivered."""
    if _received is None:
        return
    if _received == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + _received)


def handler(signum: int, frame) -> None:
    """Record ``signum``, then raise as :func:`check` does; every ``finally`` runs on the way out."""
    global _received
    if _received is None:
        _received = signum
    check()


def install() -> None:
    """Handle SIGTERM and SIGINT in this process (main thread only). A SIGINT ignored by the
    parent (a job started with ``nohup`` or ``&`` in a script) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, handler)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, handler)


def clear() -> None:
    """Forget a recorded signal (for tests that deliver one in-process)."""
    global _received
    _received = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block ends, then deliver them to the handlers found.

    For cleanups that run inside other libraries (Ray's ``shutdown``): an exception raised in the
    middle of them is turned into another exit (Ray: ``SystemExit(1)``, no message) or leaves the
    library half torn down. Inside the block a signal is only noted; at its end the handlers in
    place before are restored and each noted signal is raised again with ``signal.raise_signal``,
    so it has exactly the effect it would have had, just after the cleanup. A signal that was
    ignored or left to the system's default action is not touched. Main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    held = [s for s, h in before.items() if callable(h)]
    for s in held:
        signal.signal(s, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for s in held:
            signal.signal(s, before[s])
        for s in dict.fromkeys(noted):
            signal.raise_signal(s)
