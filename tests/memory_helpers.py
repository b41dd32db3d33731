"""Peak memory of a `curate` command, run in a fresh Python process: what the tests that bound
memory per row measure (the growth of the peak between two sizes, in bytes per added row).

Settings that make small inputs behave as large ones do: glibc's mmap threshold is fixed at
64 KiB (its sliding default rises to the largest block freed, up to 32 MiB, so an n-length array
of a few MB, freed, stays in the heap and is counted at small sizes only: the same code measured
12 to 65 bytes a row from run to run), and Arrow allocates through that same malloc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOCATORS = {"MALLOC_MMAP_THRESHOLD_": str(2**16), "ARROW_DEFAULT_MEMORY_POOL": "system"}

CHILD = r"""
import importlib, json, sys
from curate.cli import main

spec = json.loads(sys.argv[1])
for module, name, value in spec["set"]:
    setattr(importlib.import_module(module), name, value)

def run(args):
    sys.argv = ["curate", *args]
    try:
        main()
    except SystemExit as e:
        assert not e.code, e.code

def status():
    return {k: int(v.split()[0]) * 1024 for k, v in (l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}

if spec["warm"]:
    run(spec["warm"])
    open("/proc/self/clear_refs", "w").write("5")  # the peak restarts from what is resident now
base = status()["VmRSS"]
run(spec["args"])
json.dump({"base": base, **status()}, open(spec["out"], "w"))
"""


def measure(args: list, out: Path, warm: list | None = None, env: dict[str, str] | None = None,
            set_attrs: tuple = ()) -> dict[str, int]:
    """Run ``curate ARGS`` in a fresh process; bytes: ``VmHWM`` (the peak), ``base`` (resident before
    ARGS), ``VmRSS``/``RssAnon``/``RssFile`` (at the end). ``warm``: a command run first in the same
    process, after which the peak is reset (imports, allocators and thread pools settled).
    ``set_attrs``: (module, name, value) set before anything runs. ``out``: where the child writes."""
    spec = {"args": [str(a) for a in args], "warm": [str(a) for a in warm] if warm else None,
            "set": [list(s) for s in set_attrs], "out": str(out)}
    full = {**os.environ, "PYTHONPATH": str(ROOT), **ALLOCATORS, **(env or {})}
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], check=True, env=full, capture_output=True)
    return json.loads(Path(out).read_text())
