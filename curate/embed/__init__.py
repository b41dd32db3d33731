"""Embedding raw datasets into Parquet: encoders, the sharded runner and its executor."""

from curate.embed.config import EmbedConfig  # noqa: F401
from curate.embed.runner import embed  # noqa: F401
