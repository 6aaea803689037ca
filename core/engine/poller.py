"""The status poller: each site's service and agent states from its API, turned into NodeStatus
events only when they change. It ends on a flag as well as on cancellation, and every call it
makes is bounded, so the end of a run never waits on it for long."""

from __future__ import annotations

import asyncio
from typing import Any

from rollgate.core import events as ev
from rollgate.core.engine.record import Record
from rollgate.core.executor import Executor, Stopped, within
from rollgate.core.inventory import Inventory

POLL_TIMEOUT = 120.0  # seconds one site's poll may take before it is given up for this turn


async def poll_status(
    executor: Executor, inventory: Inventory, record: Record, interval: float, done: asyncio.Event
) -> None:
    """Until `done` is set: every `interval` seconds, each site's states into the record."""
    poll: Any = getattr(executor, "poll_status", None)
    if poll is None or interval <= 0:
        return
    nodes = {n.name for n in inventory.nodes}
    last: dict[str, dict[str, str]] = {}
    failing: set[str] = set()  # sites whose last poll failed (said once per streak)
    while not done.is_set():
        for site in inventory.sites:
            if done.is_set():
                return
            try:
                hosts = await within(poll(site), POLL_TIMEOUT, done)
            except Stopped:
                return
            except Exception as exc:  # the steps say what it means for them, in time
                if site.name not in failing and not record.closed:
                    failing.add(site.name)
                    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    record.emit(ev.StatusPollFailed, site=site.name, error=why[:300])
                continue
            failing.discard(site.name)
            for host, services in hosts.items():
                if host in nodes and last.get(host) != services and not record.closed:
                    last[host] = services
                    compute = services.get("nova-compute")
                    record.emit(
                        ev.NodeStatus,
                        node=host,
                        services=dict(services),
                        disabled=compute.endswith("/disabled") if compute else None,
                    )
        try:
            await within(asyncio.sleep(interval), None, done)
        except Stopped:
            return
