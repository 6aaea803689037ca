"""The lab's in-process executor: the Executor interface straight onto the World, no network.

For engine tests and benchmarks at tens of thousands of nodes; the default way to reach the
lab is over SSH and HTTP, exactly as a real cloud.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rollgate.core.executor import (
    CommandResult,
    OutputCallback,
    Stopped,
    TransportError,
    leaving,
    within,
)
from rollgate.core.inventory import Node, Site
from rollgate.core.lab.api_actions import cloud_action
from rollgate.core.lab.commands import run_command
from rollgate.core.lab.world import World


class LabExecutor:
    def __init__(self, world: World):
        self.world = world

    async def run(
        self,
        node: Node,
        command: str,
        *,
        on_output: OutputCallback,
        timeout: float,
        local: bool = False,
        job: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> CommandResult:
        if local:
            on_output("stderr", f"sh: 1: {command.split()[0]}: command not found")
            return CommandResult(127)
        if self.world.faults.is_unreachable(node.name):
            raise TransportError(
                node.name,
                f"cannot connect to {node.address}: connection "
                "refused; check the node is up and sshd listens",
            )
        lab_node = self.world.nodes[node.name]
        try:
            status = await within(
                run_command(self.world, lab_node, command, on_output), timeout, stop
            )
        except TimeoutError:
            return CommandResult(
                None,
                timed_out=True,
                terminated=True,
                error=f"timed out after {timeout:g}s; the command was terminated",
            )
        except Stopped:  # in process: a cancelled command is gone
            why = (
                "the driver left, and an in-process command does not outlive it"
                if leaving(stop)
                else "aborted by the operator"
            )
            return CommandResult(
                None, interrupted=True, terminated=True, error=f"{why}; the command was stopped"
            )
        return CommandResult(status)

    async def cloud(
        self,
        site: Site,
        action: str,
        args: dict[str, Any],
        *,
        on_output: OutputCallback,
        timeout: float,
        stop: asyncio.Event | None = None,
    ) -> CommandResult:
        try:
            return await within(
                cloud_action(self.world, site.name, action, args, on_output), timeout, stop
            )
        except TimeoutError:
            return CommandResult(None, timed_out=True, error=f"{action} timed out")
        except Stopped:
            return CommandResult(None, interrupted=True, error="aborted by the operator")

    async def poll_status(self, site: Site) -> dict[str, dict[str, str]]:
        faults = self.world.faults
        if site.name in faults.api_errors or "*" in faults.api_errors:  # as the HTTP lab says
            raise TransportError(site.name, "the compute API answered 503 Service Unavailable")
        hosts: dict[str, dict[str, str]] = {}
        for record in self.world.site_services(site.name):
            state = self.world.record_state(record)
            status = "enabled" if record.enabled else "disabled"
            hosts.setdefault(record.host, {})[record.binary] = f"{state}/{status}"
        return hosts

    async def watch_health(self, site: Site) -> dict[str, str | None]:
        """What answers at the site now, as the lab's API would say it (after its api-slow
        delay: each API's answer, the three service lists)."""
        from rollgate.core.lab.api import API_ROLES, serving

        if self.world.faults.api_delay(site.name) > 0:
            await asyncio.sleep(self.world.faults.api_delay(site.name) * (len(API_ROLES) + 3))

        runs = {r for node in self.world.inventory.site(site.name).nodes for r in node.roles}
        out: dict[str, str | None] = {}
        for kind, role in API_ROLES.items():
            if kind != "volumev3" and (kind == "identity" or role in runs):
                answers = bool(serving(self.world, site.name, kind))
                out[f"the {kind} API"] = None if answers else "503 Service Unavailable"
        for record in self.world.site_services(site.name):
            reports = self.world.record_state(record) == "up"
            out[f"{record.binary} on {record.host}"] = None if reports else "down"
        return out

    async def close(self) -> None:
        return None
