"""Are two files' vectors comparable? Every embedding option that changes the vectors must match.

The backend is compared by what it does to the vectors, not by name: torch, onnx and openvino
run the same float32 arithmetic and agree to float rounding (cosine 1.0000 to torch,
tests/test_embed_backends.py; max difference about 1e-6, less than a GPU's kernels move them),
so their files mix. A quantised backend (onnx-int8: mean cosine to torch about 0.994) mixes
only with files quantised the same way.
"""

from __future__ import annotations

from typing import Any

from curate.errors import InputError

# Fields that change the vectors; path and batch_size do not (the same weights may live anywhere).
# The backend is compared through ``vectors`` below.
VECTOR_FIELDS = ("sha256", "name", "dimension", "modality", "normalize", "image_size", "preprocessing", "pooling",
                 "max_seq_length")
# Backends that compute in float32 without quantisation (text: curate.embed.backends; images: onnx, torch).
FLOAT32_BACKENDS = ("torch", "onnx", "openvino")


def vectors(record: dict[str, Any]) -> str | None:
    """What produced a record's numbers: ``"float32"``, or the quantisation that moved them.

    From ``quantization`` where recorded ("none" is float32), else from ``backend`` (an unknown
    backend stands for itself); None when the record names neither (files from before backends).
    """
    q = record.get("quantization")
    if q is not None:
        return "float32" if q == "none" else str(q)
    b = record.get("backend")
    if b is None:
        return None
    return "float32" if b in FLOAT32_BACKENDS else str(b)


def check_same_embedding(a: dict[str, Any] | None, b: dict[str, Any] | None, a_where: str, b_where: str, hint: str) -> None:
    """InputError naming the first differing field, both values and what to re-run; absent fields are not compared.

    ``a``, ``b``: the ``embedding_model`` records of two provenances. When both hold a sha256 and
    they agree, ``name`` may still differ (the same weights under another name) and is skipped.
    Backends are compared by ``vectors``: float32 ones mix, a quantised one only with its own kind.
    """
    if not a or not b:
        return
    same_weights = a.get("sha256") and a.get("sha256") == b.get("sha256")
    for f in VECTOR_FIELDS:
        if f == "name" and same_weights:
            continue
        if f in a and f in b and a[f] != b[f]:
            raise InputError(f"{a_where} and {b_where} were embedded differently: embedding_model.{f} is "
                             f"{a[f]!r} vs {b[f]!r}; {hint}")
    va, vb = vectors(a), vectors(b)
    if va is not None and vb is not None and va != vb:
        if a.get("backend") != b.get("backend"):
            kinds = f"{_kind(va)} vs {_kind(vb)} vectors, which do not mix"
            raise InputError(f"{a_where} and {b_where} were embedded differently: embedding_model.backend is "
                             f"{a.get('backend')!r} vs {b.get('backend')!r} ({kinds}); {hint}")
        raise InputError(f"{a_where} and {b_where} were embedded differently: embedding_model.quantization is "
                         f"{a.get('quantization')!r} vs {b.get('quantization')!r}; {hint}")


def _kind(v: str) -> str:
    return "float32" if v == "float32" else ("int8" if "int8" in v else "quantised")
