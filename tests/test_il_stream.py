"""`curate il train` (and --cross-fit) read the embeddings from disk: the same bytes as in memory.

The end-to-end bytes are pinned in ``tests/fixtures/il_pinned.json`` (recorded from the in-memory
code, see ``il_pinned_helpers.py``); the training loop itself is compared with its in-memory form.
"""

from __future__ import annotations

import json
from pathlib import Path

from il_pinned_helpers import pinned_il_runs


def test_il_train_gives_the_pinned_bytes(tmp_path):
    want = json.loads((Path(__file__).parent / "fixtures" / "il_pinned.json").read_text())
    assert pinned_il_runs(tmp_path) == want
