"""`python -m lrnoise`: the `lrnoise` command."""

from lrnoise.cli import main

main()
