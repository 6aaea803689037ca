"""Rollgate: a console for supervising OpenStack upgrades across many sites.

The distribution's one import name. Its parts are the repository's top-level folders:
`rollgate.core` (everything but drawing), `rollgate.tui` (the console and the command line)
and `rollgate.themes` (stylesheets), linked here so that installed and checked-out code
import the same names.
"""
