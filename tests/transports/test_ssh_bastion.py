"""SSH as operators have it, against real OpenSSH: a node reachable only through a jump host
(both sshd in a network namespace of their own, the node on the namespace's loopback), the
jump's settings from the inventory alone, from ~/.ssh/config alone, keys from an agent, and
each failure naming the host that failed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from rollgate.core import events as ev
from rollgate.core.executor import TransportError
from rollgate.core.inventory import Node, load_inventory
from rollgate.core.journal import read_journal
from rollgate.core.transports.ssh import SshExecutor
from tests.conftest import worker_index
from tests.real_node_helpers import headless_run, keystone_inventory
from tests.sshd_helpers import NetNs, Sshd, need_netns

pytestmark = pytest.mark.integration


@dataclass
class Behind:
    """A jump host and a node only it can reach, each with its own host key and client key."""

    ns: NetNs
    jump: Sshd
    node: Sshd
    known_hosts: Path  # both host keys

    @property
    def jump_at(self) -> str:
        return f"{self.ns.guest}:{self.jump.port}"


@pytest.fixture(scope="module")
def behind() -> Iterator[Behind]:
    need_netns()
    ns = NetNs().create()
    works = [Path(tempfile.mkdtemp(prefix="rollgate-bastion-", dir="/var/tmp")) for _ in "jn"]
    servers: list[Sshd] = []
    try:
        jump = Sshd(works[0], 1, addresses=[ns.guest], netns=ns.name)
        node_address = f"127.79.{worker_index()}.9"  # the namespace's own loopback
        node = Sshd(works[1], 1, addresses=[node_address], netns=ns.name)
        # the node also takes the jump's client key (one key for both, as many sites have);
        # the jump host takes only its own
        with (node.work / "authorized_keys").open("a") as keys:
            keys.write((jump.work / "client_key.pub").read_text())
        servers = [jump.start(), node.start()]
        both = works[1] / "known_hosts.both"
        both.write_text(jump.known_hosts.read_text() + node.known_hosts.read_text())
        yield Behind(ns, jump, node, both)
    finally:
        for server in servers:
            server.stop()
        ns.delete()
        for work in works:
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def bare_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME with no ssh config, no default keys, no known_hosts, and no agent."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def node_with(behind: Behind, work: Path, ssh: str, address: str | None = None) -> Node:
    path = work / "inventory.yaml"
    path.write_text(
        "cloud: bastion\n"
        'upgrade: {from: "2025.1", to: "2025.2"}\n'
        f"ssh: {ssh}\n"
        "shared: {identity: {site: one}}\n"
        "sites:\n  one:\n    nodes:\n"
        f"      - {{name: k1, address: {address or behind.node.addresses[0]}, roles: [keystone]}}\n"
    )
    return load_inventory(path).nodes[0]


async def run_on(node: Node, ssh: SshExecutor, command: str = "echo reached $(id -un)") -> str:
    lines: list[str] = []
    result = await ssh.run(
        node, command, on_output=lambda stream, line: lines.append(line), timeout=30
    )
    assert result.exit_status == 0, (result, lines)
    return " ".join(lines)


async def logged_in(node: Node) -> str:
    """Reach the node (its command prints `reached LOGIN`) and say how it was logged in to."""
    ssh = SshExecutor()
    try:
        assert await run_on(node, ssh) == "reached root"
        return ssh.logins[node.name]
    finally:
        await ssh.close()


async def failure(node: Node) -> str:
    ssh = SshExecutor()
    try:
        with pytest.raises(TransportError) as caught:
            await ssh.run(node, "true", on_output=lambda *a: None, timeout=30)
    finally:
        await ssh.close()
    return str(caught.value)


async def test_the_node_is_not_reachable_without_the_jump_host(
    behind: Behind, tmp_path: Path, bare_home: Path
) -> None:
    node = node_with(
        behind,
        tmp_path,
        f"{{user: root, port: {behind.node.port}, key: {behind.node.work / 'client_key'}, "
        f"known_hosts: {behind.node.known_hosts}, connect_timeout: 3}}",
    )
    said = await failure(node)
    assert "connection refused" in said or "timed out" in said, said


def inventory_for_a_run(behind: Behind, work: Path, ssh: str) -> Path:
    """One keystone node behind the jump host; its backup leaves a file on the node (the
    same file system: only the network is apart)."""
    backup = f"echo backed up > {work / 'backup-ran'}"
    return keystone_inventory(work, "bastion", ssh, behind.node.addresses[0], backup)


def test_a_run_through_the_jump_host_with_the_inventory_settings_alone(
    behind: Behind, tmp_path: Path, bare_home: Path
) -> None:
    """The jump host's own key and known_hosts in the inventory, nothing in HOME: the run
    completes, and its steps ran on the node."""
    inventory = inventory_for_a_run(
        behind,
        tmp_path,
        f"{{user: root, port: {behind.node.port}, key: {behind.node.work / 'client_key'}, "
        f"known_hosts: {behind.node.known_hosts}, jump: {{host: {behind.ns.guest}, "
        f"port: {behind.jump.port}, user: root, key: {behind.jump.work / 'client_key'}, "
        f"known_hosts: {behind.jump.known_hosts}}}}}",
    )
    journal = tmp_path / "journal.jsonl"
    done = headless_run(inventory, tmp_path, journal, {"HOME": str(bare_home)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "backup-ran").read_text() == "backed up\n"
    events = read_journal(journal).events
    assert events[-1].outcome == "complete"  # type: ignore[attr-defined]
    assert all(e.outcome in ("ok", "skipped") for e in events if isinstance(e, ev.StepFinished))


async def test_the_jump_host_takes_the_inventory_key_and_known_hosts(
    behind: Behind, tmp_path: Path, bare_home: Path
) -> None:
    """`jump_host: root@JUMP:PORT` with the inventory's key and known_hosts (asyncssh's own
    tunnel string would have used ~/.ssh and failed)."""
    node = node_with(
        behind,
        tmp_path,
        f"{{user: root, port: {behind.node.port}, key: {behind.jump.work / 'client_key'}, "
        f"known_hosts: {behind.known_hosts}, jump_host: 'root@{behind.jump_at}'}}",
    )
    said = await logged_in(node)
    assert said == (
        f"as root@{behind.node.addresses[0]}:{behind.node.port} via root@{behind.jump_at}, "
        f"key {behind.jump.work / 'client_key'}"
    )


async def test_the_ssh_config_alone_is_honoured_and_said(
    behind: Behind, tmp_path: Path, bare_home: Path
) -> None:
    """An inventory with no SSH settings and an alias as the address: ~/.ssh/config's Host
    blocks give the address, port, user, key, known_hosts and the jump host (its own block
    too), and `check`'s words say they came from there."""
    config = bare_home / ".ssh" / "config"
    config.write_text(
        "Host node-behind\n"
        f"  HostName {behind.node.addresses[0]}\n  Port {behind.node.port}\n  User root\n"
        f"  IdentityFile {behind.node.work / 'client_key'}\n"
        f"  UserKnownHostsFile {behind.node.known_hosts}\n  ProxyJump bastion\n"
        "Host bastion\n"
        f"  HostName {behind.ns.guest}\n  Port {behind.jump.port}\n  User root\n"
        f"  IdentityFile {behind.jump.work / 'client_key'}\n"
        f"  UserKnownHostsFile {behind.jump.known_hosts}\n"
    )
    node = node_with(behind, tmp_path, "{}", address="node-behind")
    said = await logged_in(node)
    assert said.startswith(
        f"as root@{behind.node.addresses[0]}:{behind.node.port} via root@{behind.jump_at}, "
        f"key {behind.node.work / 'client_key'}; from {config}: "
    )
    settings = said.split(f"from {config}: ")[1].split(", ")
    assert set(settings) == {
        "address", "port", "user", "key", "known_hosts", "jump", "bastion: address",
        "bastion: port", "bastion: user", "bastion: key", "bastion: known_hosts",
    }  # fmt: skip
    # `config: false` reads none of it: the alias is then just a name nobody resolves
    ignored = node_with(
        behind,
        tmp_path,
        f"{{config: false, connect_timeout: 3, known_hosts: {behind.known_hosts}, "
        f"key: {behind.node.work / 'client_key'}}}",
        "node-behind",
    )
    assert (await failure(ignored)).startswith("k1: cannot reach node-behind:22: ")


async def test_keys_from_the_agent_and_an_empty_or_locked_agent_in_one_line(
    behind: Behind, tmp_path: Path, bare_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not shutil.which("ssh-agent"):
        pytest.skip("needs ssh-agent: apt-get install openssh-client (.ci/run does)")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        private = tmp_path / "agent_key"
        shutil.copy(behind.jump.work / "client_key", private)
        private.chmod(0o600)
        added = subprocess.run(
            ["ssh-add", str(private)], env={**os.environ}, capture_output=True, text=True
        )
        assert added.returncode == 0, added.stderr
        node = node_with(
            behind,
            tmp_path,
            f"{{user: root, port: {behind.node.port}, known_hosts: {behind.known_hosts}, "
            f"jump_host: 'root@{behind.jump_at}'}}",
        )
        said = await logged_in(node)
        assert said.endswith(", the agent's key root@" + os.uname().nodename), said

        client = await asyncssh.connect_agent(str(sock))
        assert client is not None
        await client.lock("a passphrase")
        locked = await failure(node)
        assert locked == (
            f"k1: no key to log in to the jump host {behind.jump_at} with: the ssh-agent at "
            f"SSH_AUTH_SOCK={sock} holds no keys (empty, or locked: ssh-add -l says which; "
            "ssh-add -X unlocks), and no default key file in ~/.ssh; set ssh.key, or add a key "
            "to the agent (ssh-add)"
        )
        client.close()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)
    monkeypatch.delenv("SSH_AUTH_SOCK")
    assert "no ssh-agent (SSH_AUTH_SOCK is not set)" in await failure(node)


async def test_each_jump_host_failure_names_the_jump_host(
    behind: Behind, tmp_path: Path, bare_home: Path
) -> None:
    node_key = behind.node.work / "client_key"
    jump_key = behind.jump.work / "client_key"
    base = f"user: root, port: {behind.node.port}, key: {node_key}, connect_timeout: 5"

    def jump(**given: object) -> str:
        settings = {"host": behind.ns.guest, "port": behind.jump.port, "user": "root"} | given
        return "{" + ", ".join(f"{k}: {v}" for k, v in settings.items()) + "}"

    # the jump host's key is not in the known_hosts it was given: unknown, and the jump
    # host's — never the node's key "changing"
    unknown = await failure(
        node_with(
            behind,
            tmp_path,
            f"{{{base}, known_hosts: {behind.node.known_hosts}, jump: {jump(key=jump_key)}}}",
        )
    )
    assert unknown == (
        f"k1: the host key of the jump host {behind.jump_at} is unknown: it is not in "
        f"{behind.node.known_hosts}; add it (ssh-keyscan -p {behind.jump.port} "
        f"{behind.ns.guest}) or set verify_host_keys: false knowingly"
    )
    # a known_hosts that lists the jump host with another key: that one has CHANGED
    wrong = tmp_path / "known_hosts.wrong"
    node_host_key = behind.node.known_hosts.read_text().split()[1:3]
    wrong.write_text(f"[{behind.ns.guest}]:{behind.jump.port} {' '.join(node_host_key)}\n")
    changed = await failure(
        node_with(behind, tmp_path, f"{{{base}, jump: {jump(key=jump_key, known_hosts=wrong)}}}")
    )
    assert changed.startswith(f"k1: the host key of the jump host {behind.jump_at} CHANGED")
    assert str(wrong) in changed
    # the jump host refuses the node's key: its authentication failed, not the node's
    refused = await failure(
        node_with(
            behind,
            tmp_path,
            f"{{{base}, jump: {jump(key=node_key, known_hosts=behind.jump.known_hosts)}}}",
        )
    )
    assert refused == (
        f"k1: authentication failed for root@{behind.jump_at} (the jump host) "
        f"(tried {node_key}); check the user and key"
    )
    # nothing listens where the jump host is said to be
    closed = await failure(
        node_with(
            behind,
            tmp_path,
            f"{{{base}, known_hosts: {behind.known_hosts}, "
            f"jump_host: 'root@{behind.ns.guest}:{behind.node.port}'}}".replace(
                f"key: {node_key}", f"key: {jump_key}"
            ),
        )
    )
    assert closed == (
        f"k1: cannot connect to the jump host {behind.ns.guest}:{behind.node.port}: "
        "connection refused; check the jump host is up and sshd listens"
    )
    # the jump host is fine, the node's port is not: the jump host says it cannot get there
    astray = await failure(
        node_with(
            behind,
            tmp_path,
            f"{{user: root, port: {behind.jump.port}, key: {jump_key}, known_hosts: "
            f"{behind.known_hosts}, jump_host: 'root@{behind.jump_at}'}}",
        )
    )
    assert astray.startswith(
        f"k1: the jump host {behind.jump_at} could not connect to "
        f"{behind.node.addresses[0]}:{behind.jump.port}: "
    )


async def test_nodes_behind_one_jump_host_share_its_connection(
    behind: Behind, tmp_path: Path, bare_home: Path
) -> None:
    """Two nodes behind the same jump host: one connection to it; when it drops, the next
    command opens it again."""
    ssh_line = (
        f"{{user: root, port: {behind.node.port}, key: {behind.jump.work / 'client_key'}, "
        f"known_hosts: {behind.known_hosts}, jump_host: 'root@{behind.jump_at}'}}"
    )
    first = node_with(behind, tmp_path, ssh_line)
    second = Node("k2", first.address, first.site, first.roles, first.az, first.ssh)
    ssh = SshExecutor()
    try:
        await asyncio.gather(run_on(first, ssh), run_on(second, ssh))
        assert len(ssh._jumps) == 1 and ssh.peak_connections == 3
        for conn in ssh._jumps.values():
            conn.close()
            await conn.wait_closed()
        assert await run_on(first, ssh) == "reached root"  # the jump host, opened again
    finally:
        await ssh.close()


async def test_a_chain_of_jump_hosts(behind: Behind, tmp_path: Path, bare_home: Path) -> None:
    """`a,b` as ProxyJump writes it: the second jump is opened through the first (here the
    same bastion twice, reached the second time from inside its own network)."""
    node = node_with(
        behind,
        tmp_path,
        f"{{user: root, port: {behind.node.port}, key: {behind.jump.work / 'client_key'}, "
        f"known_hosts: {behind.known_hosts}, "
        f"jump_host: 'root@{behind.jump_at},root@{behind.jump_at}'}}",
    )
    ssh = SshExecutor()
    try:
        assert await run_on(node, ssh) == "reached root"
        assert len(ssh._jumps) == 2
        assert f"via root@{behind.jump_at} then root@{behind.jump_at}," in ssh.logins["k1"]
    finally:
        await ssh.close()
