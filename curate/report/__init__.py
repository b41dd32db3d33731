"""`curate report`: an HTML page (plus its PNG folder) to look at the scores before pruning.

The exports are loaded on first use (polars, matplotlib): ``curate report --help`` reads only
``curate.report.limits``. ``build`` is the function, not the submodule of the same name.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"build": "curate.report.build", "KNOWN_SCORES": "curate.report.data",
            "score_columns": "curate.report.data", "spearman": "curate.report.stats"}
__all__ = ["build", "KNOWN_SCORES", "score_columns", "spearman"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    # Importing the submodule `build` bound that name to the module; the package exports the function.
    globals()[name] = value
    return value
