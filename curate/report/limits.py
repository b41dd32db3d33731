"""Ranges of `curate report`'s options, apart from the report's code so that `--help` quotes them
without importing polars and matplotlib."""

MAX_EXAMPLES = 100
MIN_SAMPLE, MAX_SAMPLE = 100, 200_000
