"""Cloud actions on the lab world (disable/enable/wait for a compute service): used by the
in-process executor; the lab's HTTP API changes the same records."""

from __future__ import annotations

import asyncio
from typing import Any

from rollgate.core.executor import LEFT_AS_FOUND, CommandResult, OutputCallback, fenced_by_operator
from rollgate.core.lab.world import World


async def cloud_action(
    world: World, site: str, action: str, args: dict[str, Any], out: OutputCallback
) -> CommandResult:
    try:
        return await _cloud_action(world, site, action, args, out)
    finally:
        record = (
            world.record(site, args["host"], args.get("binary", "nova-compute"))
            if ("host" in args)
            else None
        )
        if record is not None:
            world.save(service=record)  # what an API call can change: its service record


async def _cloud_action(
    world: World, site: str, action: str, args: dict[str, Any], out: OutputCallback
) -> CommandResult:
    await world.sleep("api")
    if site in world.faults.api_errors or "*" in world.faults.api_errors:
        return CommandResult(
            1, error=f"the compute API at {site} answered 503 Service Unavailable (lab fault)"
        )
    if action == "verify-compute-api":
        from rollgate.core.lab.api import max_microversion

        out("info", f"compute API of {site}: microversions 2.1 to {max_microversion(world, site)}")
        return CommandResult(0)
    if action == "wait-agents-up":
        return await _agents_up(world, site, args, out)
    record = world.record(site, args["host"], args.get("binary", "nova-compute"))
    if record is None:
        return CommandResult(1, error=f"no {args.get('binary')} service on {args['host']}")
    if action == "list-computes":
        return CommandResult(0)
    if action in ("disable-service", "enable-service"):
        action = "disable-compute" if action == "disable-service" else "enable-compute"
    kept = fenced_by_operator(record.disabled_reason is not None, record.disabled_reason)
    name = f"{record.binary} on {record.host}"
    if action == "disable-compute":
        if kept:
            out("info", f"{name} was already disabled by an operator ({record.disabled_reason}); "
                "it stays disabled after the upgrade")  # fmt: skip
            return CommandResult(0)
        record.disabled_reason = args.get("reason") or "rollgate: upgrading"
        out("info", f"{name} disabled: {record.disabled_reason}")
        return CommandResult(0)
    if action == "enable-compute":
        if kept:
            out("info", f"{name} {LEFT_AS_FOUND} ({record.disabled_reason})")
            return CommandResult(0)
        record.disabled_reason = None
        out("info", f"{name} enabled")
        return CommandResult(0)
    if action == "wait-compute-up":
        # up is not enough: the record reads up for a minute after a process died, so wait
        # for a heartbeat newer than the one seen first (the new process's own)
        first = world.record_report(record)
        while True:
            last = world.record_report(record)
            if world.record_state(record) == "up" and last is not None and last != first:
                out(
                    "info",
                    f"{record.binary} on {record.host} reports again "
                    f"(version {world.record_version(record).id})",
                )
                return CommandResult(0)
            await asyncio.sleep(max(0.01, world.time_scale))
    return CommandResult(1, error=f"unknown cloud action {action!r}")


async def _agents_up(
    world: World, site: str, args: dict[str, Any], out: OutputCallback
) -> CommandResult:
    """Each named agent on the host is alive with a heartbeat newer than the first seen."""
    records = [world.record(site, args["host"], b) for b in args["binaries"]]
    missing = [b for b, r in zip(args["binaries"], records, strict=True) if r is None]
    if missing:
        return CommandResult(1, error=f"no {', '.join(missing)} agent on {args['host']}")
    first = {r.binary: world.record_report(r) for r in records if r is not None}
    waiting = dict(first)
    while waiting:
        for binary in list(waiting):
            found = world.record(site, args["host"], binary)
            assert found is not None
            last = world.record_report(found)
            if world.record_state(found) == "up" and last is not None and last != first[binary]:
                waiting.pop(binary)
        if waiting:
            await asyncio.sleep(max(0.01, world.time_scale))
    out("info", f"{', '.join(sorted(first))} on {args['host']} alive after the restart")
    return CommandResult(0)
