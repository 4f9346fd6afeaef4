"""`python -m stillhouse` is the `stillhouse` command."""

from stillhouse.cli import main

main()
