"""Library calls leave process-wide state as they found it (issue: one runtime, no leaks).

Torch's thread count and global RNG, the environment, the transformers log level and the
matplotlib backend are the caller's: a step may change them while it runs, never after.
"""

from __future__ import annotations

import os

import matplotlib
import sentence_transformers  # noqa: F401  (imported first: it and scikit-learn set KMP_* at import time)
import torch
from transformers.utils import logging as hf_logging

from curate.embed import EmbedConfig, embed
from curate.il import ILConfig, train_il
from curate.models.heads import HeadSpec
from curate.models.train import TrainConfig
from curate.online_train import OnlineConfig, train_online
from curate.report import build
from curate.runtime import Runtime
from curate.score import ScoreConfig, score
from embed_helpers import write_jsonl
from score_helpers import clusters, write_pool


def _env():
    # torch sets TORCHINDUCTOR_CACHE_DIR itself the first time its compiler modules are imported.
    return {k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")}


def _state():
    return (torch.get_num_threads(), torch.random.get_rng_state().clone(), _env(),
            hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(), matplotlib.get_backend())


def _same(before, after):
    assert before[0] == after[0], "torch threads changed"
    assert torch.equal(before[1], after[1]), "torch's global RNG changed"
    assert before[2] == after[2], {k for k in set(before[2]) | set(after[2]) if before[2].get(k) != after[2].get(k)}
    assert before[3:] == after[3:], "transformers logging or matplotlib backend changed"


def test_every_step_leaves_process_state_as_it_found_it(tmp_path):
    torch.set_num_threads(2)
    torch.manual_seed(123)
    before = _state()
    X, y = clusters(120, d=8, classes=3, seed=0)
    Xh, yh = clusters(60, d=8, classes=3, seed=1)
    pool = write_pool(tmp_path / "pool.parquet", X, y)
    holdout = write_pool(tmp_path / "holdout.parquet", Xh, yh, ids=[f"h{i}" for i in range(60)])
    small = HeadSpec(hidden=(8,), dropout=0.1)
    train_il(holdout, tmp_path / "il", ILConfig(spec=small, train=TrainConfig(epochs=3)), runtime=Runtime(threads=1))
    _same(before, _state())
    score(pool, tmp_path / "s.parquet", ScoreConfig(methods=("el2n", "rho"), seeds=2, spec=small, il=str(tmp_path / "il")),
          runtime=Runtime(threads=1))
    _same(before, _state())
    train_online(pool, tmp_path / "run", OnlineConfig(steps=3, big_batch=20, eval_every=3, spec=small),
                 il=tmp_path / "il", runtime=Runtime(threads=1))
    _same(before, _state())
    build(tmp_path / "s.parquet", tmp_path / "r.html")
    _same(before, _state())
    embed(write_jsonl(tmp_path / "t.jsonl", n=4), tmp_path / "e.parquet", EmbedConfig(text_column="text", threads=1))
    _same(before, _state())
