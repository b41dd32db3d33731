"""Progress bars and log lines on stderr, silent when stderr is not a terminal."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from curate import cancel

stderr = Console(stderr=True, highlight=False)


def interactive() -> bool:
    return sys.stderr.isatty()


def log(message: str) -> None:
    """An informational line on stderr (only for a person at a terminal)."""
    if interactive():
        stderr.print(message)


def warn(message: str) -> None:
    """A warning on stderr, always shown: it changes what the user should believe."""
    print(f"curate: warning: {message}", file=sys.stderr, flush=True)


class _Rate(ProgressColumn):
    """Items per second, blank until rich has a speed estimate."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f} {self.unit}/s" if task.speed else "", style="cyan")


class Bar:
    """One task of a rich progress display; every method is a no-op when the display is disabled."""

    def __init__(self, progress: Progress, task):
        self._p, self._t = progress, task

    def advance(self, n: int = 1) -> None:
        # Every long loop passes here once per batch: the place to act on a signal whose
        # exception Python swallowed (see curate.cancel).
        cancel.check()
        self._p.advance(self._t, n)

    def update(self, **fields) -> None:
        """Change the task's description, total or completed count (rich's ``Progress.update``)."""
        cancel.check()
        self._p.update(self._t, **fields)

    def complete(self) -> None:
        """Early stop (e.g. convergence before the last epoch): show the bar as finished where it stopped."""
        done = next(t.completed for t in self._p.tasks if t.id == self._t)
        self._p.update(self._t, total=done, completed=done)


@contextlib.contextmanager
def bar(description: str, total: int | None, unit: str = "rows") -> Iterator[Bar]:
    """A progress bar with count, rate, elapsed time and ETA on stderr; silent when stderr is not a terminal."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _Rate(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
        disable=not interactive(),
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield Bar(progress, task)
