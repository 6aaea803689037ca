"""The engine at scale: 10 sites x 1,000 computes on the in-process lab at time scale 0.

Plan build, whole-run wall time, events per second through engine + reducer + journal
(fsynced as a real run does), journal bytes and peak RSS.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from common import peak_rss_mb, report, timed  # type: ignore[import-not-found]

from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.inventory import load_inventory
from rollgate.core.journal import JournalWriter
from rollgate.core.lab import Lab
from rollgate.core.plan import build_plan
from rollgate.tui.gc_policy import tuned_gc
from tests.bench.scale import scale_inventory_file


async def run(directory: Path, sites: int, computes: int) -> None:
    inventory = load_inventory(scale_inventory_file(directory, sites=sites, computes=computes))
    with timed() as t:
        plan = build_plan(inventory)
    report("engine.plan_build", t[0], "s")
    report("engine.plan_steps", len(plan.steps), "steps")
    lab = await Lab.start(inventory, time_scale=0, serve=False, persist=False)
    journal_path = directory / "journal.jsonl"
    journal = JournalWriter(journal_path, {"run_id": "bench", "plan": plan.to_dict()})
    engine = Engine(
        plan,
        lab.effective_inventory,
        lab.executor(),
        EngineOptions(operator="bench", run_id="bench", auto_approve=True),
        journal=journal,
    )
    try:
        with tuned_gc(), timed() as t:  # as `rollgate run` sets it
            outcome = await engine.run()
    finally:
        journal.close()
        await lab.close()
    if outcome != "complete":
        raise SystemExit(f"engine bench: the run ended {outcome}")
    events = len(engine.history)
    report("engine.run_wall", t[0], "s")
    report("engine.events", events, "events")
    report("engine.events_per_second", events / t[0], "events/s")
    report("engine.journal_bytes", journal_path.stat().st_size, "bytes")
    report("engine.peak_rss", peak_rss_mb(), "MB")


def main() -> None:
    sites, computes = (int(a) for a in (sys.argv[1:3] or ("10", "1000")))
    with tempfile.TemporaryDirectory(prefix="rollgate-bench-engine-") as tmp:
        asyncio.run(run(Path(tmp), sites, computes))


if __name__ == "__main__":
    main()
