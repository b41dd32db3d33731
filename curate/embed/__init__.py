"""Embedding raw datasets into Parquet: encoders, the sharded runner and its executor.

``EmbedConfig`` and ``embed`` are loaded on first use: the runner imports torch, which
``curate embed --help`` (it reads ``curate.embed.backends``) must not wait for.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"EmbedConfig": "curate.embed.config", "embed": "curate.embed.runner"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value
