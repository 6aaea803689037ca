"""The keys a login offers, as OpenSSH offers them: the key files the inventory or the ssh
config names, else the agent's keys (SSH_AUTH_SOCK) and then the default key files; the one
that logged in is remembered, so `check` can say which it was."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import asyncssh

from rollgate.core.executor import TransportError
from rollgate.core.transports.ssh_route import Hop

DEFAULT_KEY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass(frozen=True)
class Offered:
    label: str  # "key FILE", "the agent's key COMMENT", "default key ~/.ssh/id_ed25519"
    pair: asyncssh.SSHKeyPair
    named: bool = True  # a key file the inventory or the ssh config named (not found by us)


class ChoosingClient(asyncssh.SSHClient):
    """Offers the given keys one at a time and remembers the one the server took."""

    def __init__(self, keys: list[Offered]):
        self._keys = list(keys)
        self.offered: list[Offered] = []
        self.used: Offered | None = None

    def public_key_auth_supported(self) -> bool:
        return bool(self._keys)

    def public_key_auth_requested(self) -> list[asyncssh.SSHKeyPair] | None:
        if not self._keys:
            return None
        key = self._keys.pop(0)
        self.offered.append(key)
        return [key.pair]

    def auth_completed(self) -> None:
        self.used = self.offered[-1] if self.offered else None


class KeyRing:
    """Key files read once while unchanged; the agent asked once for its keys."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[tuple[int, int], Offered]] = {}
        self._agent: asyncssh.SSHAgentClient | None = None
        self._agent_keys: list[Offered] | None = None
        self._agent_problem = ""

    async def keys_for(self, node: str, hop: Hop) -> list[Offered]:
        if hop.keys:
            return [self._file(node, hop, Path(k).expanduser(), f"key {k}") for k in hop.keys]
        found = await self._from_agent()
        for name in DEFAULT_KEY_FILES:
            path = Path("~/.ssh", name).expanduser()
            if path.is_file():
                try:
                    found.append(
                        replace(
                            self._file(node, hop, path, f"default key ~/.ssh/{name}"), named=False
                        )
                    )
                except TransportError:
                    continue  # OpenSSH passes over a default key it cannot use, so do we
        if not found:
            raise TransportError(
                node,
                f"no key to log in to {hop.what} with: {self._agent_problem}, "
                "and no default key file in ~/.ssh; set ssh.key, or add a key to the agent "
                "(ssh-add)",
                retryable=False,
            )
        return found

    def _file(self, node: str, hop: Hop, path: Path, label: str) -> Offered:
        try:
            stat = path.stat()
        except OSError:
            raise TransportError(
                node,
                f"the SSH key {path} does not exist; check "
                + (f"the key of the jump host {hop.where}" if hop.jump else "ssh.key")
                + (
                    " in the inventory"
                    if dict(hop.origins).get("key") == "inventory"
                    else f" ({dict(hop.origins).get('key', 'ssh config')}: IdentityFile)"
                ),
                retryable=False,
            ) from None
        version = (stat.st_mtime_ns, stat.st_size)
        read = self._files.get(str(path))
        if read is None or read[0] != version:
            try:
                pair = asyncssh.load_keypairs([str(path)])[0]
            except (OSError, asyncssh.KeyImportError, ValueError) as exc:
                why = str(exc)
                if "assphrase" in why:
                    why = (
                        "it is encrypted: add it to the ssh-agent (ssh-add) and leave ssh.key unset"
                    )
                raise TransportError(
                    node, f"cannot use the SSH key {path}: {why}", retryable=False
                ) from None
            read = (version, Offered(label, pair))
            self._files[str(path)] = read
        return read[1]

    async def _from_agent(self) -> list[Offered]:
        if self._agent_keys is not None:
            return list(self._agent_keys)
        path = os.environ.get("SSH_AUTH_SOCK", "")
        self._agent_keys = []
        if not path:
            self._agent_problem = "no ssh-agent (SSH_AUTH_SOCK is not set)"
            return []
        try:
            self._agent = await asyncssh.connect_agent(path)
            keys = await self._agent.get_keys() if self._agent else []
        except (OSError, asyncssh.Error, ValueError) as exc:
            self._agent_problem = f"the ssh-agent at SSH_AUTH_SOCK={path} does not answer ({exc})"
            return []
        if self._agent is None:
            self._agent_problem = f"the ssh-agent at SSH_AUTH_SOCK={path} does not answer"
            return []
        if not keys:
            self._agent_problem = (
                f"the ssh-agent at SSH_AUTH_SOCK={path} holds no keys (empty, or locked: "
                "ssh-add -l says which; ssh-add -X unlocks)"
            )
        self._agent_keys = [
            Offered(f"the agent's key {(k.get_comment() or k.algorithm.decode())}", k, named=False)
            for k in keys
        ]
        return list(self._agent_keys)

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None
