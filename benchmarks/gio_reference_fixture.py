"""Record the reference GIO package's selection on a small seeded problem, as a test fixture.

Runs the reference package itself (``grad-info-opt`` 0.1.2, import ``GIO``), which needs JAX,
PySpark and Java; it is not a dependency of curate. Produced tests/fixtures/gio_reference_small.json with:

    python3 -m venv /work/gio-ref-venv
    /work/gio-ref-venv/bin/pip install jax jaxlib pyspark pandas numpy
    /work/gio-ref-venv/bin/pip install --no-deps grad-info-opt==0.1.2
    /work/gio-ref-venv/bin/python benchmarks/gio_reference_fixture.py tests/fixtures/gio_reference_small.json

The reference returns vectors, not indices: each returned vector is mapped back to the pool row
it equals.
"""

from __future__ import annotations

import io
import json
import sys
import contextlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gio_problems import clustered  # noqa: E402

PROBLEM = dict(n_pool=300, n_target=60, d=8, clusters=6, target_modes=3, spread=0.8, seed=0)
SEED = 0


def main(out: str) -> None:
    import jax.numpy as jnp
    from GIO import GIOKL

    pool, target, _, _ = clustered(**PROBLEM)
    gio = GIOKL.GIOKL(dim=PROBLEM["d"])
    np.random.seed(SEED)  # the reference draws its 20 seed points from NumPy's global generator
    with contextlib.redirect_stdout(io.StringIO()):
        W, kl_divs, _ = gio.fit(jnp.array(pool), jnp.array(target))
    W = np.asarray(W)[gio.uniform_start_size:]
    order = []
    for w in W:
        d = np.abs(pool - w).max(axis=1)
        j = int(np.argmin(d))
        assert d[j] < 1e-6, "a returned vector is not a pool row"
        order.append(j)
    record = {"problem": PROBLEM, "seed": SEED, "package": "grad-info-opt 0.1.2", "defaults": "GIOKL(dim=d).fit(train, X)",
              "order": order, "kl_divs": [float(v) for v in kl_divs]}
    Path(out).write_text(json.dumps(record, indent=1))
    print(f"{out}: {len(order)} selections")


if __name__ == "__main__":
    main(sys.argv[1])
