"""The dry-run executor: says what each step would run and succeeds, touching nothing."""

from __future__ import annotations

from typing import Any

from core.executor import CommandResult, OutputCallback
from core.inventory import Node, Site


class DryRunExecutor:
    async def run(
        self,
        node: Node,
        command: str,
        *,
        on_output: OutputCallback,
        timeout: float,
        local: bool = False,
    ) -> CommandResult:
        where = "deploy host" if local else f"{node.name} ({node.address})"
        on_output("info", f"dry run: would run on {where}: {command}")
        return CommandResult(0)

    async def cloud(
        self,
        site: Site,
        action: str,
        args: dict[str, Any],
        *,
        on_output: OutputCallback,
        timeout: float,
    ) -> CommandResult:
        on_output(
            "info", f"dry run: would call {action} at {site.name} ({site.region}) with {args}"
        )
        return CommandResult(0)

    async def close(self) -> None:
        return None
