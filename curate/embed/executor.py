"""Where shards run. The step hands an executor independent shard tasks and gets results back
in shard order; a distributed engine (e.g. Ray tasks per shard) only has to implement ``map``.

Tasks and the task function are plain and picklable (``curate.embed.shard``), so they can be
shipped: ``ProcessExecutor`` runs them in worker processes, each keeping its model loaded.
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

    in_process = True  # fn may carry callbacks (progress) that cannot be pickled

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


class ProcessExecutor:
    """Runs tasks in ``workers`` fresh (spawned) processes; ``fn`` and tasks must pickle.

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
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


ENGINES = ("local", "process")


def make_executor(engine: str = "local", workers: int = 1) -> Executor:
    """``local``: threads of this process; ``process``: worker processes on this machine."""
    if engine == "local":
        return InProcessExecutor(workers)
    if engine == "process":
        return ProcessExecutor(workers)
    from curate.errors import InputError

    raise InputError(f"--engine {engine}: expected one of {', '.join(ENGINES)}")
