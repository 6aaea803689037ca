"""The steps table's rows, kept step by step, are the rows a fresh look at the phase gives."""

from __future__ import annotations

import random
from pathlib import Path

from rollgate.core import events as ev
from rollgate.core.inventory import load_inventory
from rollgate.core.plan import Step, build_plan
from rollgate.core.state import RunState, apply
from rollgate.tui.phase_rows import PhaseRows

SMALL = Path(__file__).parents[1] / "engine" / "small.yaml"


def expected_rows(steps: list[Step], state: RunState, rows: int) -> list[str]:
    """What the table shows, read from scratch: every step at work or failed, then the next
    pending (at most half the rows), then the latest settled; each group in plan order."""
    status = {s.id: state.steps[s.id].status for s in steps}
    busy = [s.id for s in steps if status[s.id] != "pending" and not state.steps[s.id].done]
    pending = [s.id for s in steps if status[s.id] == "pending"]
    settled = [s.id for s in steps if state.steps[s.id].done]
    shown = (busy + pending[: rows // 2])[:rows]
    return shown + (settled[-(rows - len(shown)) :] if len(shown) < rows else [])


def test_rows_kept_step_by_step_match_a_fresh_look_through_starts_failures_and_retries() -> None:
    plan = build_plan(load_inventory(SMALL))
    phase = max(plan.phases, key=lambda p: len(p.steps))
    steps = list(phase.steps)
    state = RunState.initial(plan)
    rows = PhaseRows(steps, state.steps)
    rng = random.Random(7)
    seq = 0

    def event(cls: type[ev.Event], **fields: object) -> None:
        nonlocal seq
        seq += 1
        apply(state, cls(seq=seq, time=1000.0 + seq, mono=float(seq), **fields))

    for _ in range(60):
        touched = rng.sample(steps, 4)
        for step in touched:
            current = state.steps[step.id].status
            if current == "running":
                outcome = rng.choice(["ok", "ok", "warning", "failed", "skipped"])
                event(ev.StepFinished, step=step.id, attempt=1, outcome=outcome,
                      duration=rng.choice([0.0, 1.5, 3.0]))  # fmt: skip
            else:  # pending, settled or failed: (re)started
                event(ev.StepStarted, step=step.id, node=step.node, attempt=1)
        assert rows.update([s.id for s in touched], state.steps)
        for size in (6, len(steps)):
            assert [s.id for s in rows.shown(size)] == expected_rows(steps, state, size)
        assert rows.left == sum(1 for s in steps if not state.steps[s.id].done)
        durations = [state.steps[s.id].duration for s in steps if state.steps[s.id].done]
        measured = [d for d in durations if d]
        assert rows.average_duration == (sum(measured) / len(measured) if measured else 0.0)
    assert not rows.update(["no/such/step"], state.steps)
