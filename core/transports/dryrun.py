"""The dry-run executor: says what each step would run and succeeds, touching nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from rollgate.core.executor import CommandResult, OutputCallback
from rollgate.core.inventory import Node, Site


class DryRunExecutor:
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
        where = "deploy host" if local else f"{node.name} ({node.address})"
        on_output("info", f"would run on {where}: {command}")
        return CommandResult(0)

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
        detail = ", ".join(f"{k}={v}" for k, v in sorted(args.items()))
        on_output("info", f"would run API call {action} at {site.name} ({site.region}): {detail}")
        return CommandResult(0)

    async def close(self) -> None:
        return None
