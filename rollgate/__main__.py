"""`python -P -m rollgate ...`: the command line, as child processes start it."""

from rollgate.tui.cli import main

main()
