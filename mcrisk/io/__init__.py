"""The run folder on disk: scenario Parquet, tables, checkpoints and manifest, written atomically and read back checked. Never imports the engine."""
