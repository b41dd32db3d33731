"""Where and how compute runs: one object built at the CLI edge and passed down.

A ``Runtime`` names the torch device, the number of torch threads, the chunk of rows a scoring
pass holds at once, and the engine/workers that run per-shard work. Library functions take one
and never pick a device or a thread count themselves, so the same call runs on a laptop CPU, a
GPU or (through the executor) a cluster. ``activate()`` applies the thread count for the
duration of a step and restores torch's previous setting afterwards: a library call leaves
process-wide state as it found it.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch

from curate.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | None = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is checked, not guessed."""
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
    """Device, threads, chunk size and executor of a step; recorded in provenance."""

    device: str = "cpu"
    threads: int | None = None  # None: leave torch's thread count as it is
    chunk: int = 8192  # rows a scoring pass holds at once
    engine: str = "local"
    workers: int = 1

    def __post_init__(self):
        if self.threads is not None and not 1 <= self.threads <= 4096:
            raise InputError(f"--threads {self.threads}: expected an integer in [1, 4096]")
        if not 1 <= self.chunk <= 10**9:
            raise InputError(f"--chunk {self.chunk}: expected an integer in [1, 1000000000]")
        if not 1 <= self.workers <= 4096:
            raise InputError(f"--workers {self.workers}: expected an integer in [1, 4096]")

    @classmethod
    def build(cls, device: str | None = "auto", threads: int | None = None, **kw: Any) -> "Runtime":
        """The CLI's constructor: resolves ``auto`` once, here."""
        return cls(device=resolve_device(device), threads=threads, **kw)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @contextlib.contextmanager
    def activate(self) -> Iterator["Runtime"]:
        """Apply the thread count for the duration of the block, then restore torch's."""
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            yield self
        finally:
            torch.set_num_threads(before)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["torch_threads"] = self.threads or torch.get_num_threads()
        if self.device.startswith("cuda"):
            d["gpu"] = torch.cuda.get_device_name(self.torch_device)
        return d


CPU = Runtime()
