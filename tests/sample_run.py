"""Record the sample run shipped in sample_inventory/runs/ (a lab run of lab-two-sites.yaml
with a failure, a retry, a skip and approvals with comments), on the lab's virtual clock: each
lab command advances it by its nominal duration, so steps take realistic, reproducible time.

Regenerate it with `python -m tests.sample_run`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from orjson import Fragment

from rollgate.core import events as ev
from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.inventory import load_inventory
from rollgate.core.journal import JournalWriter
from rollgate.core.lab import Lab
from rollgate.core.plan import build_plan, plan_record

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "sample_inventory" / "lab-two-sites.yaml"
SHIPPED = ROOT / "sample_inventory" / "runs" / "lab-two-sites" / "journal.jsonl"
FAULTS = [
    "fail:east-cmp04:systemctl restart nova-compute:1:1",
    "fail:west-ctl1:neutron-db-manage upgrade --contract",
]
START = 1_795_903_200  # 2026-11-28T22:00:00Z, the demo's maintenance window


def decide(gate: ev.GateOpened) -> ev.Command:
    if gate.kind == "failure" and "neutron-db-manage upgrade --contract" in gate.title:
        return ev.Command(
            "skip", "bob", "contract in next week's window with the DBA team", gate.gate
        )
    if gate.kind == "failure":
        return ev.Command("retry", "bob", "transient: the unit timed out on a slow disk", gate.gate)
    if gate.kind == "canary":
        return ev.Command("approve", "alice", "canary healthy, instances reachable", gate.gate)
    return ev.Command("approve", "alice", f"go: {gate.title.removeprefix('start ')}", gate.gate)


async def record(path: Path) -> str:
    inventory = load_inventory(INVENTORY)
    plan = build_plan(inventory)
    lab = await Lab.start(inventory, time_scale=0, faults=FAULTS, serve=False)
    lab.world.virtual_time = 0.0  # the lab's nominal durations, reproducible
    world = lab.world

    def clock() -> float:
        return START + round(world.virtual_time or 0.0, 3)

    def monotonic() -> float:
        return round(world.virtual_time or 0.0, 3)

    record, layout = plan_record(plan)
    header = {
        "tool_version": "sample",
        "run_id": "sample-lab-two-sites",
        "cloud": inventory.cloud,
        "from": plan.source,
        "to": plan.target,
        "skip_level": plan.skip_level,
        "inventory": "sample_inventory/lab-two-sites.yaml",
        "inventory_digest": inventory.digest,
        "plan_digest": plan.digest,
        "operator": "alice",
        "host": "lab",
        "created": "2026-11-28T22:00:00Z",
        # as a run writes it (core/session.py): the layout, then the plan
        "plan_layout": layout,
        "plan": Fragment(record),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    journal = JournalWriter(path, header, fsync=False)
    engine = Engine(
        plan,
        inventory,
        lab.executor(),
        EngineOptions(
            "alice",
            "sample-lab-two-sites",
            flush_interval=3600,
            status_interval=0,
            host="lab",
            time_scale=0,  # the virtual clock: no real waits (start grace) ...
            watch_interval=0,  # ... and no wall-clock probes in a reproducible journal
        ),
        journal=journal,
        clock=clock,
        monotonic=monotonic,
    )
    task = asyncio.create_task(engine.run())
    answered: set[str] = set()
    while not task.done():
        await asyncio.sleep(0)
        gate = engine.state.gate
        if gate is not None and gate.id not in answered:
            answered.add(gate.id)
            opened = next(
                e
                for e in reversed(engine.history)
                if isinstance(e, ev.GateOpened) and e.gate == gate.id
            )
            await engine.send(decide(opened))
    outcome = await task
    journal.close()
    return outcome


if __name__ == "__main__":
    print(asyncio.run(record(SHIPPED)), SHIPPED)
