"""Where per-shard and per-chunk work runs: threads here, worker processes here, or a Ray cluster.

A step hands an executor independent, picklable tasks and a module-level task function and gets
the results back in task order (``Executor.map``). Which executor runs them never changes a
byte of the output: each task is deterministic and the step consumes results in task order.
Build one with :func:`make_executor` (the CLI goes through ``Runtime.executor()``).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Protocol, TypeVar

from curate.engine.local import InProcessExecutor
from curate.engine.process import ProcessExecutor
from curate.errors import InputError

T = TypeVar("T")
R = TypeVar("R")

ENGINES = ("local", "process", "ray")


class Executor(Protocol):
    workers: int
    in_process: bool  # True: fn may carry callbacks that cannot be pickled

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Run ``fn`` on every task; yield results in task order."""


def make_executor(engine: str = "local", workers: int = 1, *, ray_address: str | None = None,
                  cpus_per_worker: float | None = None, gpus_per_worker: float | None = None) -> Executor:
    """``local``: threads of this process; ``process``: spawned worker processes on this machine;
    ``ray``: an actor pool on a Ray cluster (``ray_address``: None starts a private local one)."""
    if engine == "local":
        return InProcessExecutor(workers)
    if engine == "process":
        return ProcessExecutor(workers)
    if engine == "ray":
        from curate.engine.ray import RayExecutor

        return RayExecutor(workers, address=ray_address, cpus_per_worker=cpus_per_worker,
                           gpus_per_worker=gpus_per_worker or 0.0)
    raise InputError(f"--engine {engine}: expected one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Executor", "InProcessExecutor", "ProcessExecutor", "make_executor"]
