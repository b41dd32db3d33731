"""The score methods' names and one-line summaries, without their code.

``curate score --help`` lists these (``--method`` choices and their help) without importing torch,
pyarrow or faiss, which the methods' modules need. Each entry repeats the name and ``summary`` of
a method in ``curate.scores.registry``; a test keeps the two equal, in the same order.
"""

from __future__ import annotations

from enum import Enum

SUMMARIES: dict[str, str] = {
    "el2n": "EL2N: error-vector norm of the K snapshot heads (higher = harder)",
    "grand": "GraNd: per-example gradient norm of the K snapshot heads (higher = more influential)",
    "rho": "RHO-LOSS: snapshot heads' loss minus the IL model's (needs --il; higher = learnable, not yet learnt)",
    "gio": "GIO: greedy selection toward a --target set's distribution (no labels needed)",
    "label_quality": "label quality: out-of-fold probability of the given label (lower = likely mislabelled)",
    "dedup": "semantic near-duplicates (cosine >= --dedup-threshold): dup_of, dup_keep, dup_sim, dup_group",
}

# typer checks --method against this and lists the choices in --help.
MethodName = Enum("MethodName", {name: name for name in SUMMARIES}, type=str)
