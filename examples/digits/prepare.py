"""Write scikit-learn's digits (1,797 real 8x8 greyscale scans, 10 classes) as an image folder.

    python prepare.py OUTDIR   ->  OUTDIR/<digit>/<index>.png

The images ship inside scikit-learn, so this works offline. Pixels are scaled from 0-16 to 0-255.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(outdir: str) -> None:
    root = Path(outdir)
    digits = load_digits()
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        d = root / str(label)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * (255 / 16)).astype(np.uint8), mode="L").save(d / f"{i:04d}.png")
    print(root)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "work/images")
