"""Tasks on threads of this process (torch releases the GIL in its kernels)."""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from curate import cancel

T = TypeVar("T")
R = TypeVar("R")


class InProcessExecutor:
    """Runs tasks on ``workers`` threads; ``workers == 1`` is a plain loop in the caller's thread.

    At most ``workers + 1`` tasks are in flight, so memory stays bounded however many tasks come.
    """

    in_process = True  # fn may carry callbacks (progress) that cannot be pickled

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        if self.workers == 1:
            for task in tasks:
                result = fn(task)
                cancel.check()  # a signal swallowed inside the task (see curate.cancel) stops here
                yield result
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="curate-shard") as pool:
            pending: collections.deque[Future] = collections.deque()
            for task in tasks:
                pending.append(pool.submit(fn, task))
                if len(pending) > self.workers:
                    yield _result(pending.popleft())
            while pending:
                yield _result(pending.popleft())


def _result(future: Future):
    """The task's result; a signal swallowed meanwhile (see curate.cancel) is raised instead."""
    result = future.result()
    cancel.check()
    return result
