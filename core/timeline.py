"""A journal as a timeline: the state after any event, without refolding from the start.

Folding is the same reducer as the live run. Every CHECKPOINT_EVERY events a copy of the
state is kept; `state_at(k)` copies the nearest checkpoint at or before k and folds the rest.
`find` moves to the next or previous gate, failure or phase boundary; `index_at_time` seeks.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable

from core import events as ev
from core.plan import Plan
from core.state import RunState, apply

CHECKPOINT_EVERY = 2000

MARKS: dict[str, Callable[[ev.Event], bool]] = {
    "gate": lambda e: isinstance(e, ev.GateOpened | ev.GateDecided),
    "failure": lambda e: (
        isinstance(e, ev.StepFinished) and e.outcome not in ("ok", "warning", "skipped")
    ),
    "phase": lambda e: isinstance(e, ev.PhaseStarted | ev.PhaseFinished),
}


class Timeline:
    def __init__(
        self, plan: Plan, events: list[ev.Event], *, checkpoint_every: int = CHECKPOINT_EVERY
    ):
        self.plan = plan
        self.events = events
        self.every = checkpoint_every
        self.times = [e.time for e in events]
        self._checkpoints: list[RunState] = []  # state after i * every events
        state = RunState.initial(plan)
        for i, event in enumerate(events):
            if i % checkpoint_every == 0:
                self._checkpoints.append(copy.deepcopy(state))
            apply(state, event)
        self.final = state

    def __len__(self) -> int:
        return len(self.events)

    def state_at(self, k: int) -> RunState:
        """The state after the first k events (0 <= k <= len)."""
        k = max(0, min(k, len(self.events)))
        if k == len(self.events):
            return copy.deepcopy(self.final)
        base = k // self.every
        state = copy.deepcopy(self._checkpoints[base])
        for event in self.events[base * self.every : k]:
            apply(state, event)
        return state

    def find(self, k: int, mark: str, forward: bool = True) -> int:
        """The position just after the next (or previous) event of `mark` from k."""
        test = MARKS[mark]
        indices = range(k, len(self.events)) if forward else range(k - 2, -1, -1)
        for i in indices:
            if test(self.events[i]):
                return i + 1
        return len(self.events) if forward else 0

    def index_at_time(self, moment: float) -> int:
        """How many events had happened at wall-clock time `moment`."""
        return bisect.bisect_right(self.times, moment)
