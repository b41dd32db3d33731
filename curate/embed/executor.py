"""Where shards run. The step hands an executor independent shard tasks and gets results back
in shard order; a distributed engine (e.g. Ray tasks per shard) only has to implement ``map``.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    workers: int

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Run ``fn`` on every task; yield results in task order."""


class InProcessExecutor:
    """Runs shards on ``workers`` threads of this process (torch releases the GIL in its kernels).

    At most ``workers + 1`` tasks are in flight, so memory stays bounded however many shards
    the input has.
    """

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        if self.workers == 1:
            for task in tasks:
                yield fn(task)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="curate-shard") as pool:
            pending: collections.deque[Future] = collections.deque()
            for task in tasks:
                pending.append(pool.submit(fn, task))
                if len(pending) > self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def make_executor(engine: str = "local", workers: int = 1) -> Executor:
    if engine != "local":
        from curate.errors import InputError

        raise InputError(f"--engine {engine}: only the in-process engine 'local' is available")
    return InProcessExecutor(workers)
