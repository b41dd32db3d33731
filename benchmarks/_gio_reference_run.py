"""Run the reference GIO package on one seeded problem; print JSON (order, KL, seconds, peak RSS).

Invoked by bench_gio.py with the interpreter of a separate environment that has the reference
(see gio_reference_fixture.py for how it is installed); never imported by curate.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gio_problems import clustered  # noqa: E402


def main() -> None:
    args = json.loads(sys.argv[1])
    import jax.numpy as jnp
    from GIO import GIOKL

    pool, target, _, _ = clustered(**args["problem"])
    gio = GIOKL.GIOKL(dim=pool.shape[1])
    np.random.seed(args["seed"])
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        W, kl, _ = gio.fit(jnp.array(pool), jnp.array(target), max_iter=args["max_iter"])
        W = np.asarray(W)
    seconds = time.perf_counter() - t0
    order = []
    g_sq = (pool.astype(np.float64) ** 2).sum(1)
    for w in W[gio.uniform_start_size:]:
        order.append(int(np.argmin(g_sq - 2 * pool.astype(np.float64) @ w.astype(np.float64))))
    print(json.dumps({"order": order, "kl": [float(v) for v in kl], "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
