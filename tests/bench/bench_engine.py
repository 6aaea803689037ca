"""The engine at scale: 10 sites x 1,000 computes on the in-process lab at time scale 0.

Plan build, whole-run wall time, events per second through engine + reducer + journal
(fsynced as a real run does), journal bytes and peak RSS; then, under a profiler, one site of
1,000 and one of 2,000 computes: the lab's share of the run's time (the in-process
executor's commands and API calls) and whether either part grows faster than the nodes.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

from common import peak_rss_mb, report, timed  # type: ignore[import-not-found]
from orjson import Fragment

from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.inventory import load_inventory
from rollgate.core.journal import JournalWriter
from rollgate.core.lab import Lab
from rollgate.core.plan import build_plan, plan_record
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
    # the header as a run writes it (core/session.py)
    record, layout = plan_record(plan)
    header = {"run_id": "bench", "plan_digest": plan.digest, "plan_layout": layout}
    journal = JournalWriter(journal_path, {**header, "plan": Fragment(record)})
    del record  # as a run lets it go once the journal has it (core/session.py)
    engine = Engine(
        plan,
        lab.effective_inventory,
        lab.executor(),
        EngineOptions(operator="bench", run_id="bench", auto_approve=True),
        journal=journal,
    )
    try:
        with tuned_gc(), timed() as t:  # as `rollgate run` sets it for its engine
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


def lab_share(computes: int) -> None:
    """Profile one site of `computes`: seconds in the lab and in the rest, per event."""
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="rollgate-bench-engine-") as tmp:
        inventory = load_inventory(scale_inventory_file(Path(tmp), sites=1, computes=computes))
        plan = build_plan(inventory)

        async def whole() -> int:
            lab = await Lab.start(inventory, time_scale=0, serve=False, persist=False)
            engine = Engine(
                plan,
                lab.effective_inventory,
                lab.executor(),
                EngineOptions(operator="bench", run_id="bench", auto_approve=True),
            )
            try:
                profile.enable()
                await engine.run()
                profile.disable()
            finally:
                await lab.close()
            return len(engine.history)

        events = asyncio.run(whole())
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(tottime for _, _, tottime, _, _ in stats.values())
    lab = sum(
        cumulative
        for (path, _, name), (_, _, _, cumulative, _) in stats.items()
        if path.endswith("lab/inprocess.py") and name in ("run", "cloud")
    )
    rest = total - lab
    report(f"engine.profiled_{computes}.lab_share", 100 * lab / total, "%")
    report(f"engine.profiled_{computes}.lab_per_event", 1e6 * lab / events, "us")
    report(f"engine.profiled_{computes}.engine_per_event", 1e6 * rest / events, "us")


def main() -> None:
    sites, computes = (int(a) for a in (sys.argv[1:3] or ("10", "1000")))
    with tempfile.TemporaryDirectory(prefix="rollgate-bench-engine-") as tmp:
        asyncio.run(run(Path(tmp), sites, computes))
    if not sys.argv[1:]:  # linear in nodes: the same cost per event at twice the size
        for size in (1000, 2000):
            lab_share(size)


if __name__ == "__main__":
    main()
