"""Which of a phase's steps the steps table shows, kept up to date step by step.

A compute phase at 1,000 nodes has ten thousand steps; sorting them all into "at work",
"pending" and "settled" on every table frame cost the console 15-30 ms a frame. A
`PhaseRows` keeps the three groups as sorted lists of plan positions and moves only the
steps that events touched, so a frame costs what changed, not the phase's size.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence

from rollgate.core.plan import Step
from rollgate.core.state import StepState

BUSY, PENDING, SETTLED = "busy", "pending", "settled"


def group_of(state: StepState) -> str:
    """Pending; settled (ok, warning, skipped); or at work or failed (what the table leads with)."""
    if state.status == "pending":
        return PENDING
    return SETTLED if state.done else BUSY


class PhaseRows:
    """A phase's steps grouped as the steps table orders them, each group in plan order."""

    def __init__(self, steps: Sequence[Step], states: dict[str, StepState]):
        self.steps = steps
        self._position = {step.id: i for i, step in enumerate(steps)}
        self._group: dict[str, str] = {}
        self._groups: dict[str, list[int]] = {BUSY: [], PENDING: [], SETTLED: []}
        self._durations: dict[int, float] = {}  # settled steps that took measurable time
        for i, step in enumerate(steps):
            group = group_of(states[step.id])
            self._group[step.id] = group
            self._groups[group].append(i)  # in plan order already
            self._note_duration(i, group, states[step.id])

    def _note_duration(self, position: int, group: str, state: StepState) -> None:
        if group == SETTLED and state.duration:
            self._durations[position] = state.duration
        else:
            self._durations.pop(position, None)

    def update(self, step_ids: Iterable[str], states: dict[str, StepState]) -> bool:
        """Move the touched steps of this phase to their groups; True if any was this phase's."""
        mine = False
        for step_id in step_ids:
            position = self._position.get(step_id)
            if position is None:
                continue
            mine = True
            state = states[step_id]
            group, before = group_of(state), self._group[step_id]
            if group != before:
                old = self._groups[before]
                del old[bisect_left(old, position)]
                insort(self._groups[group], position)
                self._group[step_id] = group
            self._note_duration(position, group, state)
        return mine

    def shown(self, rows: int) -> list[Step]:
        """At most `rows` steps: every one at work or failed, then the next pending, then the
        latest settled (in plan order)."""
        busy, pending, settled = (self._groups[g] for g in (BUSY, PENDING, SETTLED))
        picked = (busy + pending[: rows // 2])[:rows]
        if len(picked) < rows:
            picked += settled[-(rows - len(picked)) :]
        return [self.steps[i] for i in picked]

    @property
    def left(self) -> int:
        """Steps not settled yet."""
        return len(self.steps) - len(self._groups[SETTLED])

    @property
    def average_duration(self) -> float:
        """Mean seconds of the settled steps that took measurable time; 0 before any."""
        durations = self._durations
        return sum(durations.values()) / len(durations) if durations else 0.0
