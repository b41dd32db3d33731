"""``ScoreConfig``: the options of a score run, checked on construction.

Apart from the score step (``curate.score``) so that ``curate score --help`` reads its defaults,
and a bad number fails, without importing torch or polars; each method's own checks load its code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from curate.checks import int_in
from curate.errors import InputError
from curate.models.config import HeadSpec, TrainConfig
from curate.scores.catalog import SUMMARIES
from curate.scores.dedup_config import DedupConfig
from curate.scores.gio_config import GioConfig

GRAND_AT = ("checkpoint", "init")  # --grand-at: the epoch-t snapshot, or the paper's t = 0
DEFAULT_EPOCHS = 3


@dataclass(frozen=True)
class ScoreConfig:
    """Options of a score run (see ``curate score --help``); checked on construction.

    ``train.epochs`` is the one epoch count (snapshot heads train that long before scoring).
    """

    methods: tuple[str, ...] = ("el2n",)
    seeds: int = 10
    spec: HeadSpec = field(default_factory=lambda: HeadSpec(arch="mlp"))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=DEFAULT_EPOCHS))
    grand_at: str = "checkpoint"  # "checkpoint" (epoch t) or "init" (the paper's t = 0)
    std: bool = False
    seed: int = 0
    il: str | None = None
    target: str | None = None
    gio: GioConfig = field(default_factory=GioConfig)
    lq_folds: int = 5
    dedup: DedupConfig = field(default_factory=DedupConfig)
    trust_torchscript: bool = False

    @property
    def epochs(self) -> int:
        return self.train.epochs

    def __post_init__(self):
        if not self.methods:
            raise InputError(f"pass at least one --method ({', '.join(SUMMARIES)})")
        int_in("--seeds", self.seeds, 1, 1000)
        int_in("--seed", self.seed, 0, 2**31 - 1)
        int_in("--lq-folds", self.lq_folds, 2, 1000)
        if self.grand_at not in GRAND_AT:
            raise InputError(f"--grand-at {self.grand_at}: expected 'checkpoint' or 'init'")
        from curate.scores.registry import get  # the methods' code (torch, pyarrow): after the cheap checks

        for m in self.methods:
            get(m).check(self)
