"""Where and how compute runs: one object built at the CLI edge and passed down.

A ``Runtime`` names the torch device, the number of torch threads, the chunk of rows a scoring
pass holds at once, and the engine that runs per-shard and per-chunk work (``executor()``:
local threads, worker processes or a Ray cluster, with its workers and their CPUs/GPUs).
Library functions take one and never pick a device or a thread count themselves, so the same
call runs on a laptop CPU, a GPU or (through the executor) a cluster. ``activate()`` applies
the thread count for the duration of a step and restores torch's previous setting afterwards:
a library call leaves process-wide state as it found it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterator

from curate.engine import ENGINES
from curate.errors import InputError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
# Fields that only say where tasks run: they never change an output byte, so provenance omits them.
SCHEDULING = ("engine", "workers", "ray_address", "cpus_per_worker", "gpus_per_worker")


def resolve_device(name: str | None = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is checked, not guessed."""
    # torch is imported where it is used: `--help` and option errors build a Runtime without it.
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError("--device mps: no Apple-silicon GPU is available here; use --device cpu or auto")
        return "mps"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA GPU is visible; use --device cpu or auto")
        if name.startswith("cuda:"):
            index = name.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise InputError(f"--device {name}: expected cuda:N with N below {torch.cuda.device_count()}")
        return name
    raise InputError(f"--device {name}: expected auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class Runtime:
    """Device, threads, chunk size and engine of a step; device, threads and chunk are recorded in provenance."""

    device: str = "cpu"
    threads: int | None = None  # None: leave torch's thread count as it is
    chunk: int = 8192  # rows a scoring pass holds at once
    engine: str = "local"  # "local" (threads) | "process" (worker processes) | "ray" (a Ray cluster)
    workers: int = 1  # tasks run concurrently
    ray_address: str | None = None  # ray: None starts a private local cluster; auto | HOST:PORT | ray://HOST:PORT
    cpus_per_worker: float | None = None  # ray: CPUs each actor reserves, (0, 1024]; None: see curate.engine.ray._cpus
    gpus_per_worker: float | None = None  # ray: GPUs each actor reserves, [0, 256]; None: 1 on CUDA, else 0

    def __post_init__(self):
        if self.threads is not None and not 1 <= self.threads <= 4096:
            raise InputError(f"--threads {self.threads}: expected an integer in [1, 4096]")
        if not 1 <= self.chunk <= 10**9:
            raise InputError(f"--chunk {self.chunk}: expected an integer in [1, 1000000000]")
        if not 1 <= self.workers <= 4096:
            raise InputError(f"--workers {self.workers}: expected an integer in [1, 4096]")
        if self.engine not in ENGINES:
            raise InputError(f"--engine {self.engine}: expected one of {', '.join(ENGINES)}")
        self._check_ray_options()

    def _check_ray_options(self) -> None:
        for flag, value, lo, hi, open_lo in (("--cpus-per-worker", self.cpus_per_worker, 0, 1024, True),
                                             ("--gpus-per-worker", self.gpus_per_worker, 0, 256, False)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not (lo < value if open_lo else lo <= value) or value > hi:
                span = f"({lo}, {hi}]" if open_lo else f"[{lo}, {hi}]"
                raise InputError(f"{flag} {value}: expected a number in {span} (fractions are allowed)")
        if self.engine != "ray":
            for flag, value in (("--ray-address", self.ray_address), ("--cpus-per-worker", self.cpus_per_worker),
                                ("--gpus-per-worker", self.gpus_per_worker)):
                if value is not None:
                    raise InputError(f"{flag} applies to --engine ray only (the engine is {self.engine})")
            return
        from curate.engine.ray import check_address, import_ray

        check_address(self.ray_address)
        cuda = self.device.startswith("cuda")
        if cuda and self.gpus_per_worker == 0:
            raise InputError(f"--gpus-per-worker 0 with --device {self.device}: each worker needs a GPU share; "
                             "pass a fraction such as 0.5, or --device cpu")
        if not cuda and self.gpus_per_worker:
            raise InputError(f"--gpus-per-worker {self.gpus_per_worker} with --device {self.device}: the workers would "
                             "reserve GPUs they do not use; pass --device cuda, or drop --gpus-per-worker")
        import_ray()  # before any work: a missing extra is one line, not a failure mid-run

    @classmethod
    def build(cls, device: str | None = "auto", threads: int | None = None, **kw: Any) -> "Runtime":
        """The CLI's constructor: resolves ``auto`` once, here."""
        return cls(device=resolve_device(device), threads=threads, **kw)

    def executor(self):
        """Where this step's tasks run (``curate.engine``): results come back in task order."""
        from curate.engine import make_executor

        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if self.device.startswith("cuda") else 0.0
        return make_executor(self.engine, self.workers, ray_address=self.ray_address,
                             cpus_per_worker=self.cpus_per_worker, gpus_per_worker=gpus)

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device)

    @contextlib.contextmanager
    def activate(self) -> Iterator["Runtime"]:
        """Apply the thread count for the duration of the block, then restore torch's."""
        import torch

        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            yield self
        finally:
            torch.set_num_threads(before)

    def to_dict(self) -> dict[str, Any]:
        import torch

        d = {k: v for k, v in asdict(self).items() if k not in SCHEDULING}
        d["torch_threads"] = self.threads or torch.get_num_threads()
        if self.device.startswith("cuda"):
            d["gpu"] = torch.cuda.get_device_name(self.torch_device)
        return d


CPU = Runtime()
