"""`python -m mcrisk ...` is the `mcrisk` command."""

from mcrisk.cli.app import main

main()
