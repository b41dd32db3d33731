"""Small real inputs for the embed tests: texts, and digit images from scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TEXTS = [
    "The central bank raised interest rates by a quarter point.",
    "A late goal gave the home side a deserved win.",
    "The new phone ships with a faster chip and a larger battery.",
    "Parliament debated the budget until after midnight.",
    "The film won three awards at the festival.",
    "Shares fell sharply after the profit warning.",
    "The striker signed a four-year contract.",
    "Researchers released an open-source compiler.",
    "Voters head to the polls on Thursday.",
    "The band announced a world tour for next spring.",
    "Oil prices climbed on supply fears.",
    "The coach praised his team's defence.",
    "A short one.",
    "Quantum computers may break today's encryption, experts warn, though not for many years.",
]
LABELS = ["business", "sport", "tech", "politics", "entertainment", "business", "sport", "tech",
          "politics", "entertainment", "business", "sport", "tech", "tech"]


def write_jsonl(path: Path, n: int | None = None, with_id: bool = True) -> Path:
    rows = list(zip(TEXTS, LABELS))[:n]
    with open(path, "w") as f:
        for i, (t, y) in enumerate(rows):
            rec = {"text": t, "label": y}
            if with_id:
                rec = {"id": f"doc-{i:03d}", **rec}
            f.write(json.dumps(rec) + "\n")
    return path


def write_digit_folder(root: Path, per_class: int = 3, classes: int = 3) -> Path:
    """Real 8x8 greyscale digits from scikit-learn as PNGs laid out root/<class>/<file>.png."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in range(classes):
        idx = np.flatnonzero(digits.target == c)[:per_class]
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in idx:
            img = (digits.images[i] * (255 / 16)).astype(np.uint8)
            Image.fromarray(img, mode="L").save(root / str(c) / f"digit-{i:04d}.png")
    return root
