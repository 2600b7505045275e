"""The on-disk labels table: its format, its writer, shard folders and reading it back."""
