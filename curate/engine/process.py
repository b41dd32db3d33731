"""Tasks in worker processes of this machine; ``fn`` and the tasks must pickle."""

from __future__ import annotations

import collections
from concurrent.futures import Future
from typing import Callable, Iterable, Iterator, TypeVar

from curate import cancel

T = TypeVar("T")
R = TypeVar("R")


class ProcessExecutor:
    """Runs tasks in ``workers`` fresh (spawned) processes, each keeping its model loaded.

    Spawn, not fork: a forked torch process can deadlock on locks held by the parent's threads.
    At most ``2 * workers`` tasks are in flight, so memory stays bounded.
    """

    in_process = False

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx) as pool:
            pending: collections.deque[Future] = collections.deque()
            for task in tasks:
                pending.append(pool.submit(fn, task))
                if len(pending) >= 2 * self.workers:
                    yield _result(pending.popleft())
            while pending:
                yield _result(pending.popleft())


def _result(future: Future):
    """The task's result; a signal swallowed meanwhile (see curate.cancel) is raised instead."""
    result = future.result()
    cancel.check()
    return result
