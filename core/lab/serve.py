"""Serve the lab as a real cloud is reached: an SSH server per node on its loopback address
(asyncssh, public-key auth, published host keys) and the OpenStack API per lab cloud (HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from rollgate.core.errors import UserError
from rollgate.core.inventory import Node, OpenStackConfig
from rollgate.core.lab.commands import run_command
from rollgate.core.lab.world import LabNode, World
from rollgate.core.runs import write_private

if TYPE_CHECKING:
    from rollgate.core.lab import Lab

LAB_USER = "rollgate"


def _key(path: Path) -> asyncssh.SSHKey:
    """Load a key the lab made earlier, or make one (kept so known_hosts stays valid)."""
    if path.is_file():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    Path(str(path) + ".pub").chmod(0o600)
    return key


def _handler(world: World, node: LabNode):
    async def handle(process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        if not command:
            process.stdout.write("This lab node runs commands only: ssh NODE COMMAND\n")
            process.exit(1)
            return

        def out(stream: str, line: str) -> None:
            if process.is_closing():
                return
            (process.stderr if stream == "stderr" else process.stdout).write(line + "\n")

        task = asyncio.create_task(run_command(world, node, command, out))
        watcher = asyncio.create_task(_watch(process))
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            watcher.cancel()
            if not process.is_closing():
                process.exit(task.result())
            return
        task.cancel()  # signalled or the client went away: terminate the command
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if not process.is_closing():
            process.exit_with_signal("TERM")

    return handle


async def _watch(process: asyncssh.SSHServerProcess) -> None:
    """Return when the client closes the channel. A signal request is ignored, as OpenSSH
    ignores it for a command without a terminal: stopping a command takes a kill on the node
    (the remote-job wrapper's `kill`)."""
    while not process.is_closing():
        try:
            data = await process.stdin.read(4096)
        except (asyncssh.SignalReceived, asyncssh.BreakReceived):
            continue
        except (asyncssh.Error, OSError):
            return
        if not data:  # EOF on stdin: keep watching for the channel to close
            while not process.is_closing():
                await asyncio.sleep(0.05)
            return


async def serve_lab(lab: Lab, state_dir: Path | None) -> None:
    """Start every node's SSH server and the API; point the effective inventory at them."""
    from rollgate.core.lab.api import serve_api

    base = state_dir or lab.state_dir
    keys = base / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    client_key = _key(keys / "client_ed25519")
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    known_hosts_lines = []
    inventory = lab.inventory
    for node in inventory.nodes:
        host_key = _key(keys / f"host_{node.name}")
        if lab.world.faults.is_unreachable(node.name):
            continue  # nothing listens: connections are refused, as for a node that is down
        port = node.ssh.port
        try:
            server = await asyncssh.create_server(
                asyncssh.SSHServer,
                host=node.address,
                port=port,
                server_host_keys=[host_key],
                authorized_client_keys=authorized,
                process_factory=_handler(lab.world, lab.world.nodes[node.name]),
                encoding="utf-8",
                keepalive_interval=0,
            )
        except OSError as exc:
            await lab.close()
            raise UserError(
                f"cannot start the lab node {node.name} on {node.address}:{port}: "
                f"{exc.strerror}; is another lab or sshd using it? Stop it, or change the "
                "lab inventory's addresses or ssh.port"
            ) from None
        lab._servers.append(server)
        known_hosts_lines.append(
            f"[{node.address}]:{port} {host_key.export_public_key().decode().strip()}"
        )
    known_hosts = base / "known_hosts"
    write_private(known_hosts, "\n".join(known_hosts_lines) + "\n")
    lab.known_hosts = known_hosts
    lab.client_key = keys / "client_ed25519"
    clouds_yaml = await serve_api(lab, base)
    lab.clouds_yaml = clouds_yaml

    def point(node: Node) -> Node:
        ssh = dataclasses.replace(
            node.ssh,
            user=node.ssh.user or LAB_USER,
            key=str(lab.client_key),
            known_hosts=str(known_hosts),
            jump_host=None,
            jump=(),
            config=False,  # the lab's nodes are reached as the lab says, whatever ~/.ssh/config
        )
        return dataclasses.replace(node, ssh=ssh)

    cloud = inventory.sites[0].openstack.cloud or "rollgate-lab"
    sites = tuple(
        dataclasses.replace(
            site,
            nodes=tuple(point(n) for n in site.nodes),
            openstack=OpenStackConfig(
                cloud=site.openstack.cloud or cloud,
                region=site.region,
                clouds_yaml=str(clouds_yaml),
            ),
        )
        for site in inventory.sites
    )
    lab.effective_inventory = dataclasses.replace(inventory, sites=sites)
