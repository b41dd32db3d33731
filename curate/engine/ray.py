"""Tasks on a Ray cluster: an ordered map over a pool of actors (``--engine ray``).

Each actor is one long-lived worker process, so what a task function caches per process (the
embed encoder, see ``curate.embed.shard.get_encoder``) loads once per worker, not once per task.
Results come back in task order with at most ``2 * workers`` tasks in flight; large values that
several tasks share by identity (score's head states) go to the object store once and are
deserialised once per actor. An actor killed in the middle of a task is restarted and the task
re-run (tasks are idempotent: a shard writes its own part file by rename). On any exit (end,
error, Ctrl-C, SIGTERM) the tasks still queued are cancelled and the actors killed; a local
cluster is shut down only if this executor started it. ``ray`` is imported lazily: it is the
optional extra ``curate[ray]``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import logging
import math
import os
import re
import signal
import socket
import threading
from typing import Any, Callable, Iterable, Iterator, TypeVar

from curate import cancel
from curate.errors import InputError

T = TypeVar("T")
R = TypeVar("R")

EXTRA = "pip install 'curate[ray]'"
# An actor killed mid-task (OOM killer, pre-empted node) is restarted and its task re-run this often.
RETRIES = 3
_ADDRESS = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def check_address(address: str | None) -> str | None:
    """``None`` (start a private local cluster), ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    if address is None:
        return None
    a = address.strip()
    m = _ADDRESS.match(a)
    if a == "auto" or (m and 1 <= int(m.group(3)) <= 65535):
        return a
    raise InputError(f"--ray-address {address!r}: expected auto, HOST:PORT (port 1 to 65535) or ray://HOST:PORT")


def import_ray():
    """The ``ray`` module, or an InputError naming the extra that provides it."""
    try:
        import ray
    except ImportError:
        raise InputError(f"--engine ray: Ray is not installed; install the extra with {EXTRA}") from None
    return ray


@contextlib.contextmanager
def _as_found():
    """Ray's ``init`` sets environment variables and a SIGTERM handler in the driver; put them back
    (curate's SIGTERM handler unwinds through the cleanup below). Usage statistics stay off for the
    cluster it starts: its processes inherit the environment of this block."""
    env = dict(os.environ)
    main = threading.current_thread() is threading.main_thread()
    term = signal.getsignal(signal.SIGTERM) if main else None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(env)
        if main and term is not None:
            signal.signal(signal.SIGTERM, term)


def _probe(address: str | None, seconds: float = 10.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    m = _ADDRESS.match(address or "")
    if m is None:
        return
    host, port = m.group(2).strip("[]"), int(m.group(3))
    try:
        socket.create_connection((host, port), timeout=seconds).close()
    except OSError as e:
        raise InputError(f"--ray-address {address}: nothing answers at {host}:{port} ({e.strerror or e}); "
                         "start the cluster with `ray start --head` or check the address") from None


def _cpus(total: float, workers: int) -> float:
    """Default CPUs per actor: 1 where the cluster has a CPU for each worker and one to spare,
    else an equal fraction that leaves one worker's share free, so ``--workers 2`` runs on a
    2-CPU machine (two whole-CPU actors there would starve everything else)."""
    share = total / (workers + 1)
    return 1.0 if share >= 1 else max(math.floor(share * 1e4) / 1e4, 1e-4)


class _Worker:
    """One actor: runs task functions; keeps the shared values it has resolved (a few, newest).

    It works in the driver's directory where that exists on its node (this machine, or a shared
    filesystem), so relative input and output paths mean what they mean to the driver.
    """

    def __init__(self, cwd: str):
        self._shared: collections.OrderedDict = collections.OrderedDict()
        if os.path.isdir(cwd):
            os.chdir(cwd)

    def run(self, fn, task, shared: dict):
        if shared:
            import ray

            task = copy.copy(task)
            for name, ref in shared.items():
                key = ref.hex()
                if key not in self._shared:
                    self._shared[key] = ray.get(ref)
                    while len(self._shared) > 4:
                        self._shared.popitem(last=False)
                object.__setattr__(task, name, self._shared[key])
        return fn(task)


SHARE_BYTES = 1 << 16  # smaller values ride along with each task


def _weight(v, depth: int = 0) -> int:
    """Rough bytes of arrays/tensors in ``v`` (containers two levels deep); 0 for anything else."""
    n = getattr(v, "nbytes", None)
    if isinstance(n, int):
        return n
    if depth < 2 and isinstance(v, dict):
        return sum(_weight(x, depth + 1) for x in v.values())
    if depth < 2 and isinstance(v, (list, tuple)):
        return sum(_weight(x, depth + 1) for x in v)
    return 0


class _Sharer:
    """Puts a task field's value (arrays, tensors, dicts of them: 64 KiB or more) in the object
    store once, when a later task carries the same object; the actors resolve and keep it."""

    def __init__(self, ray):
        self.ray = ray
        self.seen: dict[int, Any] = {}  # id(value) -> value (kept alive so ids stay unique)
        self.refs: dict[int, Any] = {}

    def split(self, task) -> tuple[Any, dict]:
        if not dataclasses.is_dataclass(task) or isinstance(task, type) or hasattr(task, "__slots__"):
            return task, {}
        shared = {}
        for f in dataclasses.fields(task):
            v = getattr(task, f.name)
            if _weight(v) < SHARE_BYTES:
                continue
            if id(v) in self.refs:
                shared[f.name] = self.refs[id(v)]
            elif id(v) in self.seen:
                self.refs[id(v)] = shared[f.name] = self.ray.put(v)
            else:
                self.seen[id(v)] = v
        if not shared:
            return task, {}
        light = copy.copy(task)
        for name in shared:
            object.__setattr__(light, name, None)
        return light, shared


class RayExecutor:
    """An ordered ``map`` over ``workers`` Ray actors of ``cpus_per_worker`` CPUs and
    ``gpus_per_worker`` GPUs each (fractions allowed; CPUs default to :func:`_cpus`).

    ``address``: None starts a private local cluster for the call (shut down after it); ``auto``,
    ``HOST:PORT`` or ``ray://HOST:PORT`` connect to a running one (disconnected after it). A
    driver already connected (``ray.init`` called by the caller) is used as it is and left so.
    """

    in_process = False

    def __init__(self, workers: int = 1, address: str | None = None, cpus_per_worker: float | None = None,
                 gpus_per_worker: float = 0.0):
        self.workers = max(1, int(workers))
        self.address = check_address(address)
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = float(gpus_per_worker or 0.0)

    def _connect(self, ray) -> bool:
        """Connect unless the caller already did; True when this call connected (and must disconnect)."""
        if ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        _probe(address)
        kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address is None:
            kw.update(num_cpus=os.cpu_count() or 1, include_dashboard=False)
        try:
            with _as_found():
                ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            why = " ".join(str(e).split())[:300]
            raise InputError(
                f"--ray-address {address}: cannot connect to a Ray cluster ({why}); start one with `ray start --head` "
                "or check the address"
            ) from None
        return True

    def _resources(self, ray) -> tuple[float, float]:
        total = ray.cluster_resources()
        cpus_have, gpus_have = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        cpus = self.cpus_per_worker if self.cpus_per_worker is not None else _cpus(cpus_have, self.workers)
        gpus = self.gpus_per_worker
        for what, per, have, flag in (("CPUs", cpus, cpus_have, "--cpus-per-worker"),
                                      ("GPUs", gpus, gpus_have, "--gpus-per-worker")):
            need = per * self.workers
            if need > have + 1e-9:
                raise InputError(
                    f"--workers {self.workers} x {flag} {per:g} needs {need:g} {what}; the Ray cluster has {have:g}: "
                    f"lower --workers or {flag} (fractions are allowed) or add nodes"
                )
        return cpus, gpus

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        ray = import_ray()
        connected = self._connect(ray)
        actors: list = []
        pending: collections.deque = collections.deque()
        try:
            with _sigterm_exits():
                cpus, gpus = self._resources(ray)
                cls = ray.remote(_Worker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=RETRIES,
                                                  max_task_retries=RETRIES, max_concurrency=1)
                actors = [cls.remote(os.getcwd()) for _ in range(self.workers)]
                queued = [0] * self.workers
                fn_ref = ray.put(fn)
                sharer = _Sharer(ray)
                for task in tasks:
                    i = min(range(self.workers), key=queued.__getitem__)
                    light, shared = sharer.split(task)
                    pending.append((actors[i].run.remote(fn_ref, light, shared), i))
                    queued[i] += 1
                    if len(pending) >= 2 * self.workers:
                        ref, i = pending.popleft()
                        queued[i] -= 1
                        yield _get(ray, ref)
                while pending:
                    ref, i = pending.popleft()
                    queued[i] -= 1
                    yield _get(ray, ref)
        finally:
            # A signal raised inside Ray's teardown made the run exit 1 with no message (Ray turns
            # it into SystemExit(1)): it is held until the teardown is done, then delivered.
            with cancel.deferred():
                refs = [ref for ref, _ in pending]
                for ref in refs:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref)
                if refs:  # let the cancellations land, so killing the actors retries nothing
                    with contextlib.suppress(Exception):
                        ray.wait(refs, num_returns=len(refs), timeout=5)
                for a in actors:
                    with contextlib.suppress(Exception):
                        ray.kill(a, no_restart=True)
                if connected:
                    with contextlib.suppress(Exception), _as_found():
                        ray.shutdown()


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM while Ray waits must still exit as the process's handler says (curate: 143).

    Ray turns an exception raised by a signal handler inside ``ray.get`` into ``SystemExit(1)``;
    this notes the signal and restores the intended exit status.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    seen: list[int] = []

    def handler(signum, frame):
        if before == signal.SIG_IGN:
            return
        seen.append(signum)
        if callable(before):
            before(signum, frame)  # curate's CLI: SystemExit(143) after every `finally` ran
            return
        raise SystemExit(128 + signum)  # default action, but with the cleanup below

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except SystemExit as e:
        if seen and e.code != 128 + seen[0]:
            raise SystemExit(128 + seen[0]) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, before)


def _get(ray, ref):
    """The task's result; a task's own error (bad input) is raised as itself, not wrapped; a
    signal swallowed meanwhile (see curate.cancel) is raised instead of the result."""
    try:
        result = ray.get(ref)
        cancel.check()
        return result
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    except ray.exceptions.RayActorError as e:
        why = " ".join(str(e).split())[:200]
        raise InputError(
            f"--engine ray: a worker died {RETRIES + 1} times on one task ({why}); lower --workers or the batch size "
            "(memory), then re-run the same command: embed resumes from its finished shards"
        ) from None
