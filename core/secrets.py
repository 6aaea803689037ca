"""Secrets never leave the process: secret values and the common credential forms are masked
in everything Rollgate stores or shows (journal, plan.json, console, replay, watch, reports).

A recipe variable can be secret (`{secret: env NAME | file PATH | value X}` in the inventory):
commands then carry the token `{{secret:NAME}}` in the plan, and only the executor's copy of a
command, made just before it is sent to the node, holds the value.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterable

MASK = "********"
TOKEN = re.compile(r"\{\{secret:([A-Za-z0-9_]+)\}\}")

# A key is secret when a part of its name (split at _ - . and camelCase) is one of these words
# or holds one of the stems; it stays readable when its last part says it names something
# else (a URL, a type, a file...) or it is one of the known readable names.
_SECRET_PARTS = frozenset(
    {"pass", "pwd", "passwd", "auth", "key", "keys", "apikey", "psk", "secret", "secrets",
     "token", "tokens", "credential", "credentials", "privatekey", "pin"}
)  # fmt: skip
_SECRET_STEMS = ("passw", "passphrase", "secret", "token", "credential")
_READABLE_LAST = frozenset(
    {"url", "uri", "urls", "type", "file", "files", "path", "dir", "directory", "section",
     "plugin", "strategy", "version", "id", "name", "names", "manager", "format", "size",
     "length", "len", "ttl", "expiration", "provider", "method", "endpoint", "host", "port",
     "user", "username", "protocol", "algorithm", "region", "timeout", "mode", "enabled",
     "required", "policy", "cache", "backend", "driver", "interface", "project", "domain"}
)  # fmt: skip
_READABLE_NAMES = frozenset({"keystone_authtoken", "auth_section", "keystone"})
_PARTS = re.compile(r"[_.\-]+|(?<=[a-z0-9])(?=[A-Z])")


def secret_name(name: str) -> bool:
    """Whether a key of this name carries a credential (`db_password`, `AWS_SECRET_ACCESS_KEY`,
    `--os-token`), rather than naming one (`auth_url`, `ssl_key_file`)."""
    if name.lower().strip("-") in _READABLE_NAMES:
        return False
    parts = [p.lower() for p in _PARTS.split(name.strip("-")) if p]
    if not parts or parts[-1] in _READABLE_LAST:
        return False
    return any(p in _SECRET_PARTS or any(s in p for s in _SECRET_STEMS) for p in parts)


# A value ends at whitespace, a quote, a newline or an escaped newline (`\n` in a printf
# format); a quoted value at its closing quote (or a newline, or `\n`).
_VALUE = (
    r"""(?P<value>"(?:(?!\\n)[^"\n])*"?|'(?:(?!\\n)[^'\n])*'?"""
    r"""|(?:(?!\\n)[^\s"'\\,;&<>|])+)"""
)
# a key name that could be secret (secret_name() decides): one holding a stem of the words
_STEMS = r"(?i:pass|pwd|secret|token|credential|auth|key|psk|pin)"
_KEY = rf"(?P<key>(?=[A-Za-z0-9_.\-]*?{_STEMS})[A-Za-z_][A-Za-z0-9_.\-]*)"
# where a key or a command may start: not inside a longer name (an escaped newline ends one)
_START = r"(?:(?<![A-Za-z0-9_.\-])|(?<=\\n))"
_SEPARATOR = r"""["']?\s*(?:=>|=|:(?![/\\])|%3[Dd])[ \t]*"""
_FORMS = [
    # key=value, key: value, key => value, "key": "value", key%3Dvalue (URL-encoded), --key=value
    re.compile(rf"(?P<head>{_START}(?:--?)?{_KEY}{_SEPARATOR})" + _VALUE),
    # --key value (a CLI flag and its argument)
    re.compile(rf"(?P<head>{_START}--?{_KEY}[ \t]+)(?=[^-\s])" + _VALUE),
    # <key>value</key>
    re.compile(rf"(?P<head><{_KEY}>)(?P<value>[^<]*)(?=</(?P=key)>)"),
]
_MYSQL = r"(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump|mariadb-admin)\b"
_PIPED_TO = r"""(?=['"]?\s*\|\s*(?:sudo\s+)?(?:chpasswd|passwd)\b)"""
# Known commands whose credential has no key in front of it (`value` is what is masked).
_COMMANDS = [
    re.compile(
        rf"(?i)(?P<head>{_START}IDENTIFIED\s+(?:WITH\s+\S+\s+)?BY\s+(?:PASSWORD\s+)?)" + _VALUE
    ),
    re.compile(rf"(?P<head>{_START}{_MYSQL}[^\n|;&]*?\s-p)(?P<value>[^\s'\"]+)"),
    re.compile(rf"(?P<head>{_START}sshpass\s+-p\s*)" + _VALUE),
    re.compile(rf"(?P<head>{_START}rabbitmqctl\s+(?:add_user|change_password)\s+\S+\s+)" + _VALUE),
    re.compile(rf"(?P<head>{_START}htpasswd\s+-\w*b\w*\s+(?:\S+\s+)?\S+\s+)" + _VALUE),
    # echo 'user:PASS' | chpasswd, echo PASS | passwd --stdin USER
    re.compile(
        rf"""(?P<head>{_START}(?:echo|printf)\s+['"]?[^'"|\s:]+:)(?P<value>[^'"\s|]+)""" + _PIPED_TO
    ),
    re.compile(rf"(?P<head>{_START}(?:echo|printf)\s+)" + _VALUE + _PIPED_TO),
    # URLs with credentials: scheme://user:pass@host
    re.compile(r"(?i)(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]+:)(?P<value>[^@\s/]+)(?=@)"),
    # HTTP headers: Authorization: Bearer x / Basic x / token x
    re.compile(r"(?i)(?P<head>authorization\s*[:=]\s*(?:bearer|basic|token)?\s*)" + _VALUE),
]
# crudini --set FILE SECTION KEY VALUE: masked when KEY is secret
_CRUDINI = re.compile(
    rf"(?P<head>{_START}crudini\s+--set\s+(?:--\S+\s+)*\S+\s+\S+\s+(?P<key>\S+)\s+)" + _VALUE
)
_PEM = re.compile(
    r"(?P<head>-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY)-----)(?P<value>.*?)"
    r"(?=-----END (?P=kind)-----)",
    re.DOTALL,
)


# Text with none of these holds no credential form: most commands and output lines, which
# then cost one search instead of every form's.
_MAYBE = re.compile(
    r"(?i)pass|pwd|secret|token|credential|auth|key|psk|pin|://|-p|identified|-----BEGIN"
    r"|rabbitmqctl"
)


def mask(text: str, values: Iterable[str] = ()) -> str:
    """`text` with every secret value and every credential form masked: any key whose name
    says it holds a credential, in every syntax (k=v, k: v, k => v, "k": "v", XML, URL-encoded,
    CLI flags), credentials in URLs and HTTP headers, private-key blocks, and the known
    commands that take one without a key (mysql -p, sshpass, IDENTIFIED BY, rabbitmqctl,
    htpasswd, chpasswd, passwd)."""
    for value in values:
        if value:
            text = text.replace(value, MASK)
    if len(text) <= CACHED_TEXT:  # a plan asks this of the same command node after node
        return _masked_short(text)
    return _masked_long(text)


CACHED_TEXT = 512  # texts up to this long keep their masked form (the cache stays small)


def _masked_text(text: str) -> str:
    """`text` with every credential form masked."""
    if not text or not _MAYBE.search(text):
        return text
    return _masked_forms(text)


_masked_short = functools.lru_cache(maxsize=65536)(_masked_text)
# long texts (a probe's script, the same on every node) keep a few of their masked forms
_masked_long = functools.lru_cache(maxsize=256)(_masked_text)


@functools.lru_cache(maxsize=65536)
def _masked_forms(text: str) -> str:
    """`text` with every credential form masked (a plan repeats commands node after node)."""
    text = _PEM.sub(lambda m: f"{m.group('head')}\n{MASK}\n", text)
    for form in _FORMS:
        text = form.sub(_keyed, text)
    text = _CRUDINI.sub(_keyed, text)
    for form in _COMMANDS:
        text = form.sub(_masked, text)
    return text


def _keyed(match: re.Match[str]) -> str:
    if not secret_name(match.group("key")):
        return match.group(0)
    return _masked(match)


def _masked(match: re.Match[str]) -> str:
    value = match.group("value")
    bare = value.strip("'\"")
    if not bare or bare == MASK or TOKEN.fullmatch(bare):
        return match.group(0)  # nothing to hide: empty, already masked, or a token
    opening = value[0] if value[:1] in ("'", '"') else ""
    closing = opening if opening and value.endswith(opening) and len(value) > 1 else ""
    return f"{match.group('head')}{opening}{MASK}{closing}"


class Secrets:
    """The secret values of a run, by name: fills commands, masks text."""

    def __init__(self, values: dict[str, str] | None = None):
        self.values = dict(values or {})
        # longest first, so a value that contains another is masked whole
        self._ordered = sorted((v for v in self.values.values() if v), key=len, reverse=True)

    def fill(self, command: str) -> str:
        """The command as the node must run it: each token replaced by its quoted value."""
        if "{{secret:" not in command:  # most commands: one scan in C, no regex
            return command
        return TOKEN.sub(lambda m: shlex.quote(self.values.get(m.group(1), "")), command)

    def mask(self, text: str) -> str:
        return mask(text, self._ordered)


def read_secret(given: object, where: str) -> str:
    """A secret's value from the environment, a file or the inventory itself; a value that
    cannot be had is a UserError naming `where` it was asked for."""
    import os
    from pathlib import Path

    from rollgate.core.errors import UserError
    from rollgate.core.inventory import SecretSpec

    assert isinstance(given, SecretSpec)
    if given.env is not None:
        value = os.environ.get(given.env)
        if value is None:
            raise UserError(
                f"{where}: the environment variable {given.env} is not set; export it before "
                "the run"
            )
        return value
    if given.file is not None:
        try:
            return Path(given.file).expanduser().read_text().rstrip("\n")
        except OSError as exc:
            raise UserError(f"{where}: cannot read {given.file}: {exc.strerror}") from None
    return given.value or ""


def become_passwords(inventory: object, asked: str | None = None) -> dict[str, str]:
    """Each `become` node's sudo password by node name: its `ssh.become_password`, read
    once, else the one asked at the start (--ask-become-pass); none for the others."""
    from rollgate.core.inventory import Inventory

    assert isinstance(inventory, Inventory)
    read: dict[object, str] = {}
    found = {}
    for node in inventory.nodes:
        given = node.ssh.become_password
        if not node.ssh.become:
            continue
        if given is None:
            if asked is not None:
                found[node.name] = asked
            continue
        if given not in read:
            read[given] = read_secret(given, f"ssh.become_password of {node.name}")
        found[node.name] = read[given]
    return found


def resolve(spec: object) -> Secrets:
    """Read the values of an inventory's secret variables (cloud-wide and per site): from the
    environment, a file or the inventory itself. A value that cannot be had is a UserError."""

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
            value = read_secret(given, f"{where}.variables.{name}")
            if name in values and values[name] != value:
                raise UserError(
                    f"{where}.variables.{name}: a secret of that name has another value "
                    "elsewhere in the inventory; give each secret its own name"
                )
            values[name] = value
    return Secrets(values)
