"""Reading sources, writing Parquet atomically, and provenance."""
