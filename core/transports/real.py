"""The real executor: commands over SSH (or on the deploy host), cloud actions via the API."""

from __future__ import annotations

import asyncio
from typing import Any

from rollgate.core.cloud import CloudAdapter
from rollgate.core.executor import CommandResult, OutputCallback
from rollgate.core.inventory import Inventory, Node, Site
from rollgate.core.transports.local import run_local
from rollgate.core.transports.ssh import SshExecutor


class RealExecutor:
    def __init__(
        self,
        inventory: Inventory,
        *,
        insecure: bool = False,
        run_id: str = "",
        max_connections: int = 200,
        max_commands: int = 200,
        become_passwords: dict[str, str] | None = None,
    ):
        self.ssh = SshExecutor(
            max_connections=max_connections,
            max_commands=max_commands,
            insecure=insecure,
            become_passwords=become_passwords,
        )
        # a batch's worth of API calls in flight at each site that runs one at once
        policy = inventory.policy
        self.api = CloudAdapter(
            run_id=run_id, workers=policy.batch_size * max(1, policy.site_concurrency) + 4
        )
        self.unverified = insecure or any(not n.ssh.verify_host_keys for n in inventory.nodes)

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
            return await run_local(command, on_output=on_output, timeout=timeout, stop=stop)
        return await self.ssh.run(
            node, command, on_output=on_output, timeout=timeout, job=job, stop=stop
        )

    async def follow(
        self,
        node: Node,
        job: str,
        *,
        on_output: OutputCallback,
        timeout: float,
        stop: asyncio.Event | None = None,
    ) -> CommandResult | None:
        return await self.ssh.follow(node, job, on_output=on_output, timeout=timeout, stop=stop)

    async def clean_jobs(self, run_dir: str) -> None:
        await self.ssh.clean_jobs(run_dir)

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
        return await self.api.cloud(
            site, action, args, on_output=on_output, timeout=timeout, stop=stop
        )

    async def poll_status(self, site: Site) -> dict[str, dict[str, str]]:
        return await self.api.status(site)

    async def watch_health(self, site: Site) -> dict[str, str | None]:
        return await self.api.health(site)

    async def close(self) -> None:
        await self.ssh.close()
        await self.api.close()
