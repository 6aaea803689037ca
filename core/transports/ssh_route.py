"""The way to a node: its address and login, then each jump host in between, from the
inventory first and the OpenSSH client config for what it leaves unset — each setting with
where it came from, so `check` can say it and an error can name the hop that failed."""

from __future__ import annotations

import functools
import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncssh.config import SSHClientConfig

from rollgate.core.inventory import JumpSpec, Node, SshConfig, parse_jump

DEFAULT_CONFIG = "~/.ssh/config"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
INVENTORY = "inventory"
MAX_JUMPS = 8  # jump hosts in one route, a loop of ProxyJump lines included
# what Rollgate reads of an ssh config's Host block
CONFIG_NAMES = (
    *("Hostname", "Port", "User", "IdentityFile", "UserKnownHostsFile", "ProxyJump"),
    "ConnectTimeout",
)


@dataclass(frozen=True)
class Hop:
    """One SSH connection of a route: the node's own, or a jump host's."""

    name: str  # what the inventory calls it: the node's name, or the jump host as written
    host: str  # the address connected to (the ssh config's HostName when it gives one)
    port: int
    user: str | None  # None: the local user
    keys: tuple[str, ...]  # key files; none: the agent's keys, then the default key files
    known_hosts: str | None  # None: ~/.ssh/known_hosts
    verify: bool
    connect_timeout: float
    jump: bool  # a jump host rather than the node
    origins: tuple[tuple[str, str], ...] = ()  # (setting, where it came from), when not default

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def login(self) -> str:
        return f"{self.user or _local_user()}@{self.where}"

    @property
    def known_hosts_file(self) -> str:
        return self.known_hosts or DEFAULT_KNOWN_HOSTS

    @property
    def what(self) -> str:
        """How an error names this hop."""
        return f"the jump host {self.where}" if self.jump else self.where

    @property
    def identity(self) -> tuple[object, ...]:
        """Hops with the same identity share one connection (a jump host many nodes use)."""
        return (self.host, self.port, self.user, self.keys, self.known_hosts, self.verify)


@dataclass(frozen=True)
class Route:
    node: Hop
    jumps: tuple[Hop, ...]  # in the order they are passed through
    config: str | None  # the ssh config file that was read, if any

    def from_config(self) -> list[str]:
        """The settings the ssh config gave (`user`, `jump: port`...), for `check`."""
        found = [name for name, origin in self.node.origins if origin != INVENTORY]
        for hop in self.jumps:
            found += [f"{hop.name}: {n}" for n, origin in hop.origins if origin != INVENTORY]
        return found


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "the local user"


def _is_set(ssh: SshConfig, setting: str) -> bool:
    """Whether the inventory gave this setting (rather than leaving the default)."""
    value = getattr(ssh, setting)
    default = SshConfig.__dataclass_fields__[setting].default
    return setting in ssh.given or (value is not None and value != default)


def config_file(ssh: SshConfig) -> Path | None:
    """The ssh config to read: the inventory's `ssh.config`, else ~/.ssh/config when it
    exists; none with `config: false`."""
    if ssh.config is False:
        return None
    path = Path(str(ssh.config or DEFAULT_CONFIG)).expanduser()
    if ssh.config is None and not os.access(path, os.R_OK):
        return None
    return path


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _lookup(path: str, stamp: tuple[int, int], host: str) -> dict[str, Any]:
    """What the ssh config says for `host` (as `ssh HOST` would read it)."""
    del stamp  # part of the cache key: an edited file is read again
    config = SSHClientConfig.load(None, [path], False, False, False, _local_user(), (), host, ())
    found = {n: config.get(n) for n in CONFIG_NAMES}
    return {n: v for n, v in found.items() if v not in (None, (), [])}


def read_config(path: Path | None, host: str) -> dict[str, Any]:
    if path is None:
        return {}
    return _lookup(str(path), _stamp(path), host)


class _Sources:
    """Where a hop's settings come from, in order: the hop's own (a jump's), the inventory's
    ssh settings, the ssh config's block for the host; each choice remembered for `check`."""

    def __init__(self, ssh: SshConfig, path: Path | None, host: str, inherits: tuple[str, ...]):
        self.ssh = ssh
        self.inherits = inherits
        self.said = read_config(path, host)
        self.where = f"ssh config {path}" if path else ""
        self.origins: dict[str, str] = {}
        if "Hostname" in self.said:
            self.origins["address"] = self.where

    def host(self, written: str) -> str:
        return str(self.said.get("Hostname", written))

    def pick(self, setting: str, own: object, option: str, default: object) -> Any:
        if own is not None:
            self.origins[setting] = INVENTORY
            return own
        if setting in self.inherits and _is_set(self.ssh, setting):
            self.origins[setting] = INVENTORY
            return getattr(self.ssh, setting)
        if option in self.said:
            self.origins[setting] = self.where
            return self.said[option]
        return default

    def keys(self, own: str | None) -> tuple[str, ...]:
        found = self.pick("key", own, "IdentityFile", ())
        return (found,) if isinstance(found, str) else tuple(map(str, found))

    def known_hosts(self, own: str | None) -> str | None:
        found = self.pick("known_hosts", own, "UserKnownHostsFile", None)
        if isinstance(found, list | tuple):  # OpenSSH reads several; the first is kept
            return str(found[0]) if found else None
        return found


# what a jump host takes from the inventory's ssh settings when it does not say it itself
# (its login and port are its own or its block's, as OpenSSH's: a bastion's user is rarely
# the nodes')
JUMP_INHERITS = ("key", "known_hosts", "connect_timeout")


def route(node: Node, *, insecure: bool = False) -> Route:
    """The way to `node`: its own hop, and the jump hosts before it."""
    ssh = node.ssh
    path = config_file(ssh)
    given = _Sources(ssh, path, node.address, ("user", "port", *JUMP_INHERITS))
    hop = Hop(
        name=node.name,
        host=given.host(node.address),
        port=int(given.pick("port", None, "Port", 22)),
        user=given.pick("user", None, "User", None),
        keys=given.keys(None),
        known_hosts=given.known_hosts(None),
        verify=ssh.verify_host_keys and not insecure,
        connect_timeout=float(given.pick("connect_timeout", None, "ConnectTimeout", 10.0)),
        jump=False,
    )
    jumps: tuple[JumpSpec, ...] = ssh.jump
    if jumps:
        given.origins["jump"] = INVENTORY
    elif str(given.said.get("ProxyJump", "none")).lower() != "none":
        jumps = tuple(parse_jump(h) for h in str(given.said["ProxyJump"]).split(","))
        given.origins["jump"] = given.where
    # as OpenSSH does, the first jump host's own ProxyJump (in its Host block) comes first
    while jumps and len(jumps) < MAX_JUMPS:
        before = str(read_config(path, jumps[0].host).get("ProxyJump", "none"))
        if before.lower() == "none":
            break
        jumps = (*(parse_jump(h) for h in before.split(",")), *jumps)
    hop = Hop(**{**hop.__dict__, "origins": tuple(given.origins.items())})
    return Route(hop, tuple(_jump_hop(j, ssh, path, insecure) for j in jumps), str(path or ""))


def _jump_hop(spec: JumpSpec, ssh: SshConfig, path: Path | None, insecure: bool) -> Hop:
    """A jump host's hop: its own settings, then the inventory's key, known_hosts and
    timeout, then the ssh config's block for it."""
    given = _Sources(ssh, path, spec.host, JUMP_INHERITS)
    verify = spec.verify_host_keys if spec.verify_host_keys is not None else ssh.verify_host_keys
    return Hop(
        name=spec.host,
        host=given.host(spec.host),
        port=int(given.pick("port", spec.port, "Port", 22)),
        user=given.pick("user", spec.user, "User", None),
        keys=given.keys(spec.key),
        known_hosts=given.known_hosts(spec.known_hosts),
        verify=verify and not insecure,
        connect_timeout=float(
            given.pick("connect_timeout", spec.connect_timeout, "ConnectTimeout", 10.0)
        ),
        jump=True,
        origins=tuple(given.origins.items()),
    )
