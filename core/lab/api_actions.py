"""Cloud actions on the lab world (disable/enable/wait for a compute service, an API's answer,
the final read-back): used by the in-process executor; the lab's HTTP API changes and answers
from the same records (core/lab/api.py), and core/cloud_checks.py words it the same way."""

from __future__ import annotations

import asyncio
from typing import Any

from rollgate.core.executor import LEFT_AS_FOUND, CommandResult, OutputCallback, fenced_by_operator
from rollgate.core.lab.api import API_ROLES, max_microversion, serving
from rollgate.core.lab.world import World

MICROVERSIONED = ("compute", "placement", "block-storage", "volumev3")


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
    if world.faults.api_delay(site) > 0:  # a lab fault: a slow API (real seconds)
        await asyncio.sleep(world.faults.api_delay(site))
    if site in world.faults.api_errors or "*" in world.faults.api_errors:
        return CommandResult(
            1, error=f"the compute API at {site} answered 503 Service Unavailable (lab fault)"
        )
    if action == "verify-compute-api":
        action, args = "verify-api", {"service_type": "compute", **args}
    if action in ("wait-api-up", "verify-api"):
        return await _api_up(world, site, args, out)
    if action == "verify-cloud":
        return _verify_cloud(world, site, args, out)
    if action == "wait-agents-up":
        return await _agents_up(world, site, args, out)
    if action == "verify-scope":
        return _scope(world, site, args, out)
    if action == "wait-service-up":
        action = "wait-compute-up"
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
            await world.poll()
    return CommandResult(1, error=f"unknown cloud action {action!r}")


def _scope(world: World, site: str, args: dict[str, Any], out: OutputCallback) -> CommandResult:
    """What the site's service records list against the inventory (core/cloud_scope.py)."""
    from rollgate.core.cloud_scope import scope_result

    listed: dict[str, set[str]] = {}
    for record in world.site_services(site):
        listed.setdefault(record.host, set()).add(record.binary)
    spec = world.inventory.site(site)
    roles = {n.name: n.roles for n in spec.nodes}
    return scope_result(spec.region, listed, roles, args, out)


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
            await world.poll()
    out("info", f"{', '.join(sorted(first))} on {args['host']} alive after the restart")
    return CommandResult(0)


async def _api_up(
    world: World, site: str, args: dict[str, Any], out: OutputCallback
) -> CommandResult:
    """The API answers (asked until a process serves it); with `expect_microversion`, its
    newest microversion must be that one."""
    kind = str(args["service_type"])
    while not serving(world, site, kind):
        await world.poll()
    high = max_microversion(world, site, kind) if kind in MICROVERSIONED else None
    region = world.inventory.site(site).region
    out("info", f"the {kind} API of {region} answers" + (
        f": microversions up to {high}" if high else ""))  # fmt: skip
    want = args.get("expect_microversion")
    if want is None or high == want:
        return CommandResult(0)
    return CommandResult(
        1,
        error=f"the {kind} API of {region} announces {high} as its newest microversion, while "
        f"{args.get('target')}'s code has {want}: an API process still runs other code "
        "(restart it), or answers from elsewhere",
    )


def _verify_cloud(
    world: World, site: str, args: dict[str, Any], out: OutputCallback
) -> CommandResult:
    """Every API the site's catalog lists answers (microversioned ones at the target's newest),
    every service record and agent of the site is up."""
    expect = dict(args.get("expect_microversions") or {})
    runs = {role for node in world.inventory.nodes if node.site == site for role in node.roles}
    problems: list[str] = []
    for kind, role in API_ROLES.items():
        if kind != "identity" and role not in runs:
            continue
        if not serving(world, site, kind):
            problems.append(f"the {kind} API does not answer (503 Service Unavailable)")
            continue
        line = f"{kind} API answers"
        if kind in MICROVERSIONED:
            high = max_microversion(world, site, kind)
            want = expect.get("block-storage" if kind == "volumev3" else kind)
            line += f", microversions up to {high}"
            if want is not None and high != want:
                problems.append(
                    f"the {kind} API announces {high}, not {args.get('target')}'s {want}"
                )
        out("info", line)
    records = world.site_services(site)
    down = [f"{r.binary} on {r.host} is down" for r in records if world.record_state(r) != "up"]
    out("info", f"{len(records) - len(down)} of {len(records)} services and agents up")
    problems += down
    if problems:
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        return CommandResult(1, error="; ".join(problems[:10]) + more)
    return CommandResult(0)
