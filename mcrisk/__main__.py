"""`python -m mcrisk ...` is the `mcrisk` command."""

from .cli import main

main()
