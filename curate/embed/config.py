"""``EmbedConfig``: the options of an embed run, and their ranges (checked before any work)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from curate.embed.backends import DEFAULT_BACKEND, check_backend
from curate.errors import InputError

# (option, low, high): inclusive ranges, also quoted in --help.
RANGES = {
    "batch_size": ("--batch-size", 1, 65536),
    "image_size": ("--image-size", 32, 4096),
    "shard_size": ("--shard-size", 1, 10_000_000),
    "workers": ("--workers", 1, 256),
    "threads": ("--threads", 1, 1024),
}


@dataclass(frozen=True)
class EmbedConfig:
    """Options of an embed run. Every field that changes the output is part of the resume hash."""

    text_column: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    keep_columns: tuple[str, ...] = ()
    model: str | None = None
    batch_size: int = 64
    image_size: int = 224
    normalize: bool = False
    shard_size: int = 4096
    workers: int = 1
    threads: int | None = None  # torch intra-op threads; None = number of CPUs
    device: str = "cpu"  # a resolved torch device (curate.runtime.resolve_device); GPU kernels change low bits
    on_error: str = "raise"  # "raise" | "skip"
    engine: str = "local"  # "local" (threads) | "process" (worker processes) | "ray" (a Ray cluster)
    drop_unlabelled: bool = False  # skip rows whose label is null/NaN instead of failing
    allow_outside_paths: bool = False  # image paths may leave the table's directory
    backend: str = DEFAULT_BACKEND  # text only: auto | torch | onnx | onnx-int8 | openvino; embed() resolves auto
    backend_cache: str | None = None  # where exports are cached; None: $CURATE_CACHE_DIR, $XDG_CACHE_HOME/curate or ~/.cache/curate

    def __post_init__(self):
        for name, (flag, lo, hi) in RANGES.items():
            value = getattr(self, name)
            if value is None and name == "threads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InputError(f"{flag} {value}: must be an integer from {lo} to {hi}")
        if self.device != "cpu" and not (self.device in ("cuda", "mps") or self.device.startswith("cuda:")):
            raise InputError(f"--device {self.device}: expected cpu, cuda, cuda:N or mps")
        check_backend(self.backend)
        if self.on_error not in ("raise", "skip"):
            raise InputError(f"--on-error {self.on_error}: expected 'raise' or 'skip'")

    def output_affecting(self) -> dict[str, Any]:
        d = asdict(self)
        # How shards are scheduled, and where exports are cached, does not change any shard's bytes.
        for k in ("workers", "engine", "backend_cache"):
            d.pop(k)
        return d
