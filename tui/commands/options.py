"""Option types shared by the commands."""

from __future__ import annotations

import math
from typing import Any

import click


class TimeScale(click.ParamType):
    """A lab time scale: a finite number from 0 (instant) to 1000."""

    name = "scale"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not 0 <= number <= 1000:
            self.fail(f"{value!r} is not a time scale from 0 (instant) to 1000", param, ctx)
        return number


TIME_SCALE = TimeScale()


ask_become_pass = click.option(
    "--ask-become-pass",
    "-K",
    "ask_become_pass",
    is_flag=True,
    help="Ask once for the sudo password of `become` nodes that have no ssh.become_password "
    "(kept in memory only, never journalled).",
)


def asked_become_password(ask: bool) -> str | None:
    """The become password, asked on the terminal when --ask-become-pass is given."""
    if not ask:
        return None
    return str(click.prompt("sudo (become) password", hide_input=True, err=True))
