"""Journals at 1,000,000 events: write with the engine's fsync policy, open for replay, seek.

The events are a synthetic run of the 10 x 1,000 plan (tests/bench/synthetic.py). Writing
follows the engine: every event is appended, and 100 lanes at a time wait for one group
commit (write + fsync) before they act. Replay opens the journal lazily and folds on demand.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from common import peak_rss_mb, percentile, report, timed  # type: ignore[import-not-found]
from orjson import Fragment

from rollgate.core.checkpoints import EVERY, CheckpointFile, Marks, identity_of, timeline_path
from rollgate.core.client import open_journal_client
from rollgate.core.inventory import load_inventory
from rollgate.core.journal import JournalWriter
from rollgate.core.plan import build_plan, plan_record
from rollgate.core.state import RunState, apply
from rollgate.core.timeline import Timeline, journal_timeline
from rollgate.tui.gc_policy import tuned_gc
from tests.bench.scale import scale_inventory_file
from tests.bench.synthetic import synthetic_events

LANES = 100  # steps in flight at once, as in a batch of 100 computes


async def write(path: Path, count: int) -> int:
    plan = build_plan(load_inventory(scale_inventory_file(path.parent, sites=10, computes=1000)))
    record, layout = plan_record(plan)
    header = {
        "run_id": "bench",
        "plan_digest": plan.digest,
        "plan_layout": layout,
        "plan": Fragment(record),
    }
    journal = JournalWriter(path, header)
    durable = 0
    written = 0
    with timed() as t:
        for event in synthetic_events(plan, outputs_per_step=13, limit=count):
            journal.append(event)
            written += 1
            if event.durable:
                durable += 1
                if durable % LANES == 0:  # the lanes of a batch act together
                    await journal.commit()
        journal.close()
    report("journal.write_events_per_second", written / t[0], "events/s")
    report("journal.bytes", path.stat().st_size, "bytes")
    # the timeline checkpoints the engine writes as it folds the same events (core/engine/
    # record.py): measured apart, as what they add to a run
    state = RunState.initial(plan)
    marks = Marks(CheckpointFile(timeline_path(path), identity_of(header), EVERY))
    with timed() as t:
        for event in synthetic_events(plan, outputs_per_step=13, limit=count):
            marks.before(state, event)
            apply(state, event)
            marks.after(state, event.to_json_bytes())
        marks.file.close()
    report("journal.checkpoints_fold_and_write", t[0], "s")
    report("journal.checkpoints_bytes", timeline_path(path).stat().st_size, "bytes")
    return written


def replay(path: Path, count: int, label: str) -> None:
    with timed() as t:
        client = open_journal_client(str(path))
        timeline = journal_timeline(client.plan, client.index)
        timeline.view_at(0)
    report(f"journal.replay_open{label}", t[0], "s")
    if label == "_again":
        return
    with tuned_gc(console=True):  # as `rollgate replay` runs its console (tui/commands)
        seeks(timeline, count, label)


def seeks(timeline: Timeline, count: int, label: str) -> None:
    with timed() as t:
        timeline.view_at(count // 2)
    report(f"journal.seek_middle_first{label}", t[0], "s")
    with timed() as t:
        timeline.view_at(count)
    report(f"journal.seek_end_first{label}", t[0], "s")
    with timed() as t:
        timeline.view_at(count // 2)
    report(f"journal.seek_middle_again{label}", t[0], "s")
    rng = random.Random(7)
    times = []
    for _ in range(20):
        with timed() as t:
            timeline.view_at(rng.randrange(count + 1))
        times.append(t[0])
    report(f"journal.seek_random_p50{label}", percentile(times, 50), "s")
    report(f"journal.seek_random_max{label}", max(times), "s")
    report(f"journal.replay_peak_rss{label}", peak_rss_mb(), "MB")


def main() -> None:
    if sys.argv[1:2] == ["--replay"]:  # a fresh process, as `rollgate replay` is
        replay(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if sys.argv[4:] else "")
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="rollgate-bench-journal-") as tmp:
        path = Path(tmp) / "journal.jsonl"
        written = asyncio.run(write(path, count))
        os.sync()  # a past run's journal: not still being written back to disk
        # Opened right after the run that wrote it, then once more (the file now read before);
        # then without its checkpoints (a journal from before them: the replay folds, and
        # writes them), and once more (with the ones that replay wrote).
        for label in ("", "_again", "_no_checkpoints", "_rebuilt_checkpoints"):
            if label == "_no_checkpoints":
                timeline_path(path).unlink()
            subprocess.run(
                [sys.executable, __file__, "--replay", str(path), str(written), label], check=True
            )


if __name__ == "__main__":
    main()
