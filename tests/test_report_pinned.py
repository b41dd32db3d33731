"""The report's page, PNGs and JSON summary are byte-identical to those of the in-memory version.

tests/fixtures/report_pinned.json holds, per case, the SHA-256 of the page (its provenance
``<meta name="curate">`` left out: it names the command line), of every PNG and the ``--json``
summary (paths left out; the page's names the input, written TMP/...), as the version that loaded every score column into one polars
DataFrame wrote them (commit 0e6509c). The cases cover nulls, NaN, ties, null and integer labels,
no labels, no embeddings, GIO picks and duplicate pairs. Two pages differ on purpose, each
case's ``note`` says how (a class of rows without a label, which 0e6509c tabulated as empty).
Regenerate (only on purpose) with
``PYTHONPATH=. python tests/test_report_pinned.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import run  # noqa: E402
from report_helpers import scored_with_nulls  # noqa: E402
from test_prune import scored_file  # noqa: E402

PINNED = Path(__file__).parent / "fixtures" / "report_pinned.json"


def _inputs(tmp: Path) -> dict[str, tuple[Path, list[str]]]:
    """Case name -> (scored file, extra CLI options)."""
    rng = np.random.default_rng(7)
    n = 300
    ties = np.round(rng.random(n) * 4) / 4  # many equal values: the order among ties is pinned too
    lab = [None if i % 11 == 0 else int(v) for i, v in enumerate(rng.integers(0, 4, n))]
    plain = tmp / "plain.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "el2n": [0.1, None, 0.3, 0.2]}), plain)
    return {
        "nulls": (scored_with_nulls(tmp / "nulls.parquet", n=240), []),
        "nulls_small_examples": (scored_with_nulls(tmp / "nulls2.parquet", n=60, seed=1), ["--examples", "2",
                                                                                          "--map-score", "rho"]),
        "ties_int_labels": (scored_with_nulls(tmp / "ties.parquet", n=n, seed=2, labels=lab,
                                              extra={"el2n": pa.array(ties), "rho": pa.array(1 - ties),
                                                     "grand": pa.array(np.concatenate([rng.normal(size=n - 2), [-400.0, 900.0]]))}),
                            ["--examples", "7", "--map-sample", "100", "--seed", "3"]),
        "prune_file": (scored_file(tmp / "prune.parquet"), ["--examples", "0"]),
        "no_labels_no_embeddings": (plain, []),
    }


def _digest(tmp: Path, scored: Path, options: list[str], name: str) -> dict:
    out = tmp / f"{name}.html"
    r = run("report", scored, "-o", out, "--json", *options)
    assert r.exit_code == 0, r.stderr
    page = re.sub(r'<meta name="curate" content="[^"]*">', "", out.read_text(encoding="utf-8")).replace(str(tmp), "TMP")
    summary = {k: v for k, v in json.loads(r.stdout).items() if k not in ("output", "pngs")}
    pngs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp / f"{name}_files").iterdir())}
    return {"page": hashlib.sha256(page.encode()).hexdigest(), "pngs": pngs, "summary": summary}


@pytest.mark.parametrize("case", ["nulls", "nulls_small_examples", "ties_int_labels", "prune_file",
                                  "no_labels_no_embeddings"])
def test_report_is_byte_identical_to_the_in_memory_version(tmp_path, case):
    scored, options = _inputs(tmp_path)[case]
    want = json.loads(PINNED.read_text())[case]
    got = _digest(tmp_path, scored, options, case)
    assert got["summary"] == want["summary"]
    assert got["pngs"] == want["pngs"]
    assert got["page"] == want["page"]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        cases = _inputs(Path(d))
        PINNED.write_text(json.dumps({k: _digest(Path(d), s, o, k) for k, (s, o) in cases.items()}, indent=1) + "\n")
