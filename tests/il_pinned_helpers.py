"""The pinned IL runs: small holdouts and pools trained by `curate il train` (and --cross-fit).

``tests/fixtures/il_pinned.json`` holds, per run, the sha256 of the saved weights, the training
curve, the chosen epoch and the split sizes, recorded from the in-memory code before IL training
was streamed from disk; the same commands must keep giving the same bytes on CPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import run
from curate.io.parquet import embedding_column, write_table
from score_helpers import clusters, write_pool


def _int_pool(path: Path, n: int, d: int, classes: int, seed: int) -> Path:
    """Integer labels 0..classes-1: with 12 classes their text order ("10" < "2") is not their numeric order."""
    X, y = clusters(n, d=d, classes=classes, seed=seed, spread=1.5)
    table = pa.table({"id": pa.array([f"p{i:04d}" for i in range(n)]), "label": pa.array(y.astype(np.int32)),
                      "embedding": embedding_column(X)})
    write_table(table, path, {"step": "embed", "embedding_model": {"name": "synthetic", "sha256": "b" * 64, "dimension": d}})
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model(d: Path) -> dict:
    cfg = json.loads((d / "config.json").read_text())
    return {"weights": _sha((d / "model.safetensors").read_bytes()),
            "curve": _sha(json.dumps(cfg["curve"], sort_keys=True).encode()),
            "chosen_epoch": cfg["chosen_epoch"], "labels": cfg["labels"],
            "rows": [cfg["trained_on"][k] for k in ("rows", "train_rows", "val_rows")]}


# name -> (pool maker, CLI options); every run on the CPU with one thread.
RUNS = {
    "mlp_dropout": ("str", ["--epochs", 6, "--hidden", 8, "--dropout", 0.2, "--batch-size", 16, "--val-fraction", 0.2, "--seed", 3]),
    "early_stop": ("str", ["--epochs", 30, "--patience", 2, "--lr", 1, "--arch", "linear", "--batch-size", 32]),
    "big_validation": ("big", ["--epochs", 2, "--arch", "linear", "--batch-size", 4096, "--val-fraction", 0.9]),
    "cross_fit": ("int", ["--cross-fit", "--epochs", 4, "--hidden", 8, "--dropout", 0.1, "--batch-size", 8, "--seed", 5]),
}


def pinned_il_runs(d: Path) -> dict[str, dict]:
    X, y = clusters(150, d=8, classes=3, seed=11, spread=1.5)
    pools = {"str": write_pool(d / "str.parquet", X, y),
             # 80,000 rows, 72,000 of them validation: more than one 65,536-row block.
             "big": write_pool(d / "big.parquet", *clusters(80_000, d=4, classes=3, seed=12, spread=2.0)),
             "int": _int_pool(d / "int.parquet", 250, d=6, classes=12, seed=13)}
    out = {}
    for name, (pool, args) in RUNS.items():
        r = run("il", "train", pools[pool], "-o", d / name, "--threads", 1, "--device", "cpu", *args)
        assert r.exit_code == 0, r.stderr
        if "--cross-fit" in args:
            t = pq.read_table(d / name / "assignment.parquet")
            out[name] = {"half0": _model(d / name / "half0"), "half1": _model(d / name / "half1"),
                         "assignment": _sha("\n".join(f"{i}\t{h}" for i, h in zip(t.column("id").to_pylist(),
                                                                                  t.column("half").to_pylist())).encode()),
                         "assignment_schema": str(t.schema.remove_metadata())}
        else:
            out[name] = _model(d / name)
    return out


if __name__ == "__main__":  # record the fixture: python tests/il_pinned_helpers.py OUT.json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        Path(sys.argv[1]).write_text(json.dumps(pinned_il_runs(Path(tmp)), indent=1, sort_keys=True) + "\n")
