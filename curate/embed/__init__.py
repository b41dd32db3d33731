"""Embedding raw datasets into Parquet: encoders, the sharded runner and its executor."""

from curate.embed.runner import EmbedConfig, embed  # noqa: F401
