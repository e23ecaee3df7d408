"""The `mcrisk` command: a thin typer and rich shell over the library."""
