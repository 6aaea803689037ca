"""Errors a user can cause and fix: the CLI prints them as one line each and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment; the message names cause and fix."""

    exit_code = 2

    def __init__(self, message: str = "", *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
