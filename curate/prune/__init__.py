"""Pruning: keep the rows whose scores satisfy conditions, and write them in the source's format."""

from curate.prune.conditions import Condition, parse_condition  # noqa: F401
from curate.prune.select import PruneConfig, prune  # noqa: F401
