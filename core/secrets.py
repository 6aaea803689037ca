"""Secrets never leave the process: secret values and the common credential forms are masked
in everything Rollgate stores or shows (journal, plan.json, console, replay, watch, reports).

A recipe variable can be secret (`{secret: env NAME | file PATH | value X}` in the inventory):
commands then carry the token `{{secret:NAME}}` in the plan, and only the executor's copy of a
command, made just before it is sent to the node, holds the value.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

MASK = "********"
TOKEN = re.compile(r"\{\{secret:([A-Za-z0-9_]+)\}\}")

_KEY = r"[A-Za-z0-9_.-]*(?:pass(?:word|wd|phrase)|secret|token|api[_-]?key|credentials?)"
_FORMS = [
    # KEY=value and KEY: value (env vars, ini, yaml, CLI): OS_PASSWORD=x, db_password: x
    re.compile(rf"(?i)(\b{_KEY}\b[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"),
    # --password x, --os-password=x, --token x, -p'x' is left alone (too common)
    re.compile(rf"(?i)(--{_KEY}(?:[= ]+))(\"[^\"]*\"|'[^']*'|[^\s\"']+)"),
    # URLs with credentials: scheme://user:pass@host
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)"),
    # HTTP headers: Authorization: Bearer x / Basic x, X-Auth-Token: x, X-Subject-Token: x
    re.compile(r"(?i)(authorization\s*[:=]\s*(?:bearer|basic|token)?\s*)([^\s,;\"']+)"),
    re.compile(r"(?i)(x-(?:auth|subject|service)-token\s*[:=]\s*)([^\s,;\"']+)"),
]


def mask(text: str, values: Iterable[str] = ()) -> str:
    """`text` with every secret value and every common credential form masked."""
    for value in values:
        if value:
            text = text.replace(value, MASK)
    for form in _FORMS:
        text = form.sub(_masked, text)
    return text


def _masked(match: re.Match[str]) -> str:
    value = match.group(2)
    if value in (MASK, f"'{MASK}'", f'"{MASK}"') or TOKEN.fullmatch(value.strip("'\"")):
        return match.group(0)  # already masked, or a token (no value in it)
    quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] else ""
    rest = match.group(3) if match.re.groups >= 3 else ""
    return f"{match.group(1)}{quote}{MASK}{quote}{rest}"


class Secrets:
    """The secret values of a run, by name: fills commands, masks text."""

    def __init__(self, values: dict[str, str] | None = None):
        self.values = dict(values or {})
        # longest first, so a value that contains another is masked whole
        self._ordered = sorted((v for v in self.values.values() if v), key=len, reverse=True)

    def fill(self, command: str) -> str:
        """The command as the node must run it: each token replaced by its quoted value."""
        return TOKEN.sub(lambda m: shlex.quote(self.values.get(m.group(1), "")), command)

    def mask(self, text: str) -> str:
        return mask(text, self._ordered)


def resolve(spec: object) -> Secrets:
    """Read the values of an inventory's secret variables (cloud-wide and per site): from the
    environment, a file or the inventory itself. A value that cannot be had is a UserError."""
    from pathlib import Path

    from rollgate.core.errors import UserError
    from rollgate.core.inventory import InventorySpec, SecretSpec

    assert isinstance(spec, InventorySpec)
    places = [("recipe", spec.recipe)]
    places += [(f"sites.{name}.recipe", site.recipe) for name, site in spec.sites.items()]
    values: dict[str, str] = {}
    for where, overrides in places:
        for name, given in (overrides.variables if overrides else {}).items():
            if not isinstance(given, SecretSpec):
                continue
            if given.env is not None:
                import os

                value = os.environ.get(given.env)
                if value is None:
                    raise UserError(
                        f"{where}.variables.{name}: the environment variable {given.env} is "
                        "not set; export it before the run"
                    )
            elif given.file is not None:
                try:
                    value = Path(given.file).expanduser().read_text().rstrip("\n")
                except OSError as exc:
                    raise UserError(
                        f"{where}.variables.{name}: cannot read {given.file}: {exc.strerror}"
                    ) from None
            else:
                value = given.value or ""
            if name in values and values[name] != value:
                raise UserError(
                    f"{where}.variables.{name}: a secret of that name has another value "
                    "elsewhere in the inventory; give each secret its own name"
                )
            values[name] = value
    return Secrets(values)
