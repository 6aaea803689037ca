"""The API adapter never fails a healthy node for its own queueing: a call's timeout starts
when it is sent, a wait sleeps on the loop (a worker holds only a call), and a status poll
whose call fails says so and asks again. Against the lab's API over HTTP with its api-slow
fault (real seconds per call) and a compute API that is down."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from rollgate.core.cloud import CloudAdapter
from rollgate.core.inventory import Site
from rollgate.core.lab import Lab
from tests.lab_helpers import lab_inventory

pytestmark = pytest.mark.integration


def with_timeout(site: Site, seconds: float) -> Site:
    return dataclasses.replace(site, openstack=dataclasses.replace(site.openstack, timeout=seconds))


async def test_calls_queued_behind_a_slow_api_do_not_time_out_while_they_wait(
    tmp_path: Path,
) -> None:
    """24 calls at once, 8 workers, each call 0.4 s at the API, a 1 s API timeout: the last
    wave is sent after ~0.8 s of waiting and still succeeds; the waiting is said."""
    lab = await Lab.start(lab_inventory(tmp_path, faults=["api-slow:one:0.4"]), serve=True)
    adapter = CloudAdapter(workers=8)
    lines: list[str] = []
    try:
        site = with_timeout(lab.effective_inventory.site("one"), 1.0)
        await adapter.cloud(  # the connection, its token and discovery first (3 slow calls)
            with_timeout(site, 30),
            "list-computes",
            {"host": "cmp1"},
            on_output=lambda *a: None,
            timeout=30,
        )
        results = await asyncio.gather(
            *(
                adapter.cloud(
                    site,
                    "list-computes",
                    {"host": f"cmp{1 + i % 3}"},
                    on_output=lambda stream, line: lines.append(line),
                    timeout=30,
                )
                for i in range(24)
            )
        )
    finally:
        await adapter.close()
        await lab.close()
    assert [r.exit_status for r in results] == [0] * 24, [r.error for r in results]
    waiting = [line for line in lines if "calls waiting" in line]
    assert waiting and waiting[0].startswith("API of one: ")
    assert "its timeout starts when it is sent" in waiting[0]


async def test_a_wait_holds_no_worker_between_its_asks(tmp_path: Path) -> None:
    """Eight waits for a compute API that is down fill the eight workers of the old adapter;
    here they sleep on the loop, and a ninth call answers while they still wait."""
    lab = await Lab.start(lab_inventory(tmp_path), serve=True)
    adapter = CloudAdapter(workers=8, poll_interval=0.2)
    try:
        site = lab.effective_inventory.site("one")
        lab.world.stop_unit(lab.world.nodes["ctl1"], "nova-api")  # the compute API: 503
        waits = [
            asyncio.ensure_future(
                adapter.cloud(
                    site,
                    "wait-api-up",
                    {"service_type": "compute"},
                    on_output=lambda *a: None,
                    timeout=30,
                )
            )
            for _ in range(8)
        ]
        await asyncio.sleep(1.0)  # every wait has asked at least once and sleeps now
        ninth = await adapter.cloud(
            site, "verify-api", {"service_type": "identity"}, on_output=lambda *a: None,
            timeout=30,
        )  # fmt: skip
        still_waiting = [not w.done() for w in waits]
        lab.world.nodes["ctl1"].units["nova-api"].active = True  # it starts again
        lab.world.nodes["ctl1"].units["nova-api"].down_until = 0.0
        done = await asyncio.gather(*waits)
    finally:
        await adapter.close()
        await lab.close()
    assert ninth.exit_status == 0, ninth.error
    assert all(still_waiting)
    assert [d.exit_status for d in done] == [0] * 8, [d.error for d in done]


async def test_a_failing_status_poll_is_said_and_asked_again(tmp_path: Path) -> None:
    """While the compute API answers 503 to the service list, wait-compute-up's polls fail:
    each failure is in the step's output, and when the API is back the wait ends ok."""
    lab = await Lab.start(lab_inventory(tmp_path), serve=True)
    # heartbeats every 50 s, the last one written now: no newer one comes by itself while
    # the test runs, however loaded the machine, so the wait has to poll
    lab.world.time_scale = 5.0
    adapter = CloudAdapter(poll_interval=0.05)
    lines: list[str] = []
    try:
        site = lab.effective_inventory.site("one")
        cmp1 = lab.world.nodes["cmp1"]
        cmp1.units["nova-compute"].down_until = lab.world.now()
        waiting = asyncio.ensure_future(
            adapter.cloud(
                site,
                "wait-compute-up",
                {"host": "cmp1"},
                on_output=lambda stream, line: lines.append(line),
                timeout=60,
            )
        )
        await asyncio.sleep(0.3)  # its first heartbeat is read; it polls
        lab.world.faults.api_errors.add("one")  # the compute API answers 503 now
        while not any("status poll failed" in line for line in lines):
            assert not waiting.done(), waiting.result()
            await asyncio.sleep(0.05)
        lab.world.faults.api_errors.discard("one")
        lab.world.stop_unit(cmp1, "nova-compute")  # the restart: a newer heartbeat follows
        cmp1.units["nova-compute"].active = True
        cmp1.units["nova-compute"].started_at = lab.world.now()
        cmp1.units["nova-compute"].down_until = lab.world.now()
        result = await waiting
    finally:
        await adapter.close()
        await lab.close()
    failed = next(line for line in lines if "status poll failed" in line)
    assert "503" in failed and "asking again in" in failed
    assert result.exit_status == 0, result.error


async def test_a_watch_probe_slower_than_its_limit_is_not_an_outage() -> None:
    """The site's API answers every call after a delay, so the watch's probes take longer
    than their limit: slow is not down; no outage is journalled, no gate opens, and the run
    ends complete."""
    from rollgate.core import events as ev
    from tests.engine.conftest import drive, make

    h = await make(
        faults=["api-slow:*:0.05"],  # a probe: 0.05 s per API and list, ~0.5 s
        options={"watch_interval": 0.05, "watch_probe_timeout": 0.1},
    )
    try:
        word = await drive(h, lambda gate: None, timeout=120)
    finally:
        await h.lab.close()
    assert h.events(ev.ServiceDown) == []
    assert [g.kind for g in h.events(ev.GateOpened) if g.kind == "outage"] == []
    assert word == "complete"


async def test_a_failing_status_poll_is_journalled_once_per_streak() -> None:
    """The site's API answers 503 to the service lists: the status poll says so once (the
    node states shown may be old), not silently and not at every turn."""
    from rollgate.core import events as ev
    from tests.engine.conftest import make

    h = await make(faults=["api-error:one"], auto_approve=False, options={"status_interval": 0.01})
    run = asyncio.ensure_future(h.engine.run())
    try:
        while not h.events(ev.StatusPollFailed):
            assert not run.done(), run.result()
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # ten more turns of the poll
        await h.client.send(ev.Command("abort", "tester", "seen"))
        await run
    finally:
        await h.lab.close()
    failed = h.events(ev.StatusPollFailed)
    assert [(f.site, "503" in f.error) for f in failed] == [("one", True)]
