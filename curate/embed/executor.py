"""Where shards run: kept as an import path; the executors live in :mod:`curate.engine`."""

from curate.engine import ENGINES, Executor, InProcessExecutor, ProcessExecutor, make_executor

__all__ = ["ENGINES", "Executor", "InProcessExecutor", "ProcessExecutor", "make_executor"]
