"""What a head is and how it trains: ``HeadSpec`` and ``TrainConfig``, checked on construction.

Apart from the torch code (``heads``, ``train``) so that ``curate score --help`` and
``curate train --help`` read their defaults without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from curate.checks import float_in, int_in
from curate.errors import InputError

ARCHITECTURES = ("linear", "mlp")
# The optimisers TrainConfig may name: the keys of curate.models.train.OPTIMIZERS (a test keeps them equal).
OPTIMIZER_NAMES = ("AdamW", "Adam")


@dataclass(frozen=True)
class HeadSpec:
    """Architecture of a head: ``linear`` (in -> classes) or ``mlp`` (in -> hidden... -> classes, ReLU)."""

    arch: str = "mlp"
    in_dim: int = 0
    n_classes: int = 0
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.0

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise InputError(f"--arch {self.arch}: expected one of {', '.join(ARCHITECTURES)}")
        float_in("--dropout", self.dropout, 0.0, 1.0, hi_open=True)
        if self.arch == "mlp" and not self.hidden:
            raise InputError("--hidden: an mlp head needs at least one hidden size")
        for h in self.hidden:
            int_in("--hidden", h, 1, 1_000_000)
        int_in("in_dim", self.in_dim, 0, 10**7)
        int_in("n_classes", self.n_classes, 0, 10**7)

    @property
    def sizes(self) -> list[int]:
        hidden = list(self.hidden) if self.arch == "mlp" else []
        return [self.in_dim, *hidden, self.n_classes]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden) if self.arch == "mlp" else []
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HeadSpec":
        return cls(arch=d["arch"], in_dim=int(d["in_dim"]), n_classes=int(d["n_classes"]),
                   hidden=tuple(d.get("hidden") or ()), dropout=float(d.get("dropout", 0.0)))


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule: AdamW with PyTorch's defaults unless told otherwise."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01  # torch.optim.AdamW's default
    optimizer: str = "AdamW"  # one of OPTIMIZER_NAMES

    def __post_init__(self):
        int_in("--epochs", self.epochs, 0, 100_000)
        int_in("--batch-size", self.batch_size, 1, 10**8)
        float_in("--lr", self.lr, 0.0, 1e3, lo_open=True)
        float_in("--weight-decay", self.weight_decay, 0.0, 1e3)
        if self.optimizer not in OPTIMIZER_NAMES:
            raise InputError(f"optimizer {self.optimizer}: expected one of {', '.join(OPTIMIZER_NAMES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
