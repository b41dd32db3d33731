"""`curate report`: an HTML page (plus its PNG folder) to look at the scores before pruning."""

from curate.report.build import build
from curate.report.data import KNOWN_SCORES, score_columns, spearman

__all__ = ["build", "KNOWN_SCORES", "score_columns", "spearman"]
