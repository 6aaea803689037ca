"""A run as a timeline: the state after any event, without refolding from the start.

Folding is the same reducer as the live run. One working state (the cursor) moves forward by
folding. Every `every` events a checkpoint keeps copies of what changed since the previous one
(the steps and nodes the events touched, and the small run-level fields), so checkpoints cost
memory in proportion to the work done, not to the size of the cloud. To move the cursor to a
checkpoint, in either direction, only the steps and nodes touched in between are swapped for
their copies as of that checkpoint; then it folds the rest of the way.

The events come from an EventSource: a journal parsed lazily (core/journal_index.py) or a list.
Checkpoints the engine wrote beside the journal (core/checkpoints.py) are taken as they are
found valid, so a first seek folds at most `every` events; the ones a replay makes itself
past those are written there too.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

from rollgate.core import events as ev
from rollgate.core.checkpoints import (
    CHANGING,
    EVERY,
    Checkpoint,
    CheckpointFile,
    identity_of,
    load,
    step_values,
    take,
    timeline_path,
)
from rollgate.core.journal_index import EventList, EventSource, JournalIndex, paused_gc
from rollgate.core.plan import Plan
from rollgate.core.runs import driver_alive
from rollgate.core.state import (
    RunState,
    StepState,
    apply,
    copy_node,
    copy_run_fields,
    copy_state,
    touched_by,
)

CHECKPOINT_EVERY = 25_000

FAILED_OUTCOMES = ("failed", "timed_out", "unreachable", "interrupted")
MARKS: dict[str, Callable[[str], bool]] = {
    "gate": lambda kind: kind in ("gate-opened", "gate-decided"),
    "failure": lambda kind: kind == "step-finished",  # then its outcome is checked
    "phase": lambda kind: kind in ("phase-started", "phase-finished"),
}


class Timeline:
    def __init__(
        self,
        plan: Plan,
        source: EventSource | Sequence[ev.Event],
        *,
        checkpoint_every: int = CHECKPOINT_EVERY,
        found: tuple[int, list[Checkpoint]] = (0, []),
        persist: CheckpointFile | None = None,
    ):
        """`found`: checkpoints read from beside the journal, (every, valid ones in order);
        `persist`: where the checkpoints made here past those are written."""
        self.plan = plan
        self.source: EventSource = EventList(source) if isinstance(source, Sequence) else source
        self.every = found[0] if found[1] else checkpoint_every
        self._persist = persist
        with paused_gc():
            self._cursor = RunState.initial(plan)
            self._initial_nodes = {k: copy_node(v) for k, v in self._cursor.nodes.items()}
        self._initial_run = RunState(plan=plan)
        copy_run_fields(self._cursor, self._initial_run)
        self._position = 0
        self._checkpoints: list[Checkpoint] = []  # [i - 1]: as of position i * every
        self._step_versions: dict[str, list[int]] = {}  # checkpoints holding a copy of a step
        self._node_versions: dict[str, list[int]] = {}
        with paused_gc():
            for number, checkpoint in enumerate(found[1], start=1):
                self._checkpoints.append(checkpoint)
                for sid in checkpoint.steps:
                    self._step_versions.setdefault(sid, []).append(number)
                for name in checkpoint.nodes:
                    self._node_versions.setdefault(name, []).append(number)
        # What the events after the last checkpoint touched (recorded by the first pass).
        self._recorded_to = len(self._checkpoints) * self.every
        self._touched_steps: set[str] = set()
        self._touched_nodes: set[str] = set()

    def __len__(self) -> int:
        return len(self.source)

    # ---------------------------------------------------------------- states

    def view_at(self, k: int) -> RunState:
        """The state after the first k events, borrowed: valid until the next call."""
        k = max(0, min(k, len(self.source)))
        j = min(k // self.every, len(self._checkpoints))
        if not (j * self.every <= self._position <= k):
            self._move_to_checkpoint(j)
        self._fold_to(k)
        return self._cursor

    def state_at(self, k: int) -> RunState:
        """The state after the first k events, the caller's to keep."""
        return copy_state(self.view_at(k))

    def _fold_to(self, k: int) -> None:
        state = self._cursor
        every = self.every
        with paused_gc():
            while self._position < k:
                start = self._position
                stop = min(k, (start // every + 1) * every)
                events = self.source.events(start, stop)
                if start >= self._recorded_to:  # first time here: note what events touch
                    steps, nodes = self._touched_steps, self._touched_nodes
                    output = ev.StepOutput
                    for event in events:
                        if type(event) is output:  # most events: they touch one step's tail
                            steps.add(event.step)
                        else:
                            touched_steps, touched_nodes = touched_by(state, event)
                            steps.update(touched_steps)
                            nodes.update(touched_nodes)
                        apply(state, event)
                    self._recorded_to = stop
                else:
                    recorded = self._recorded_to - start
                    for event in events[:recorded]:
                        apply(state, event)
                    for event in events[recorded:]:
                        touched_steps, touched_nodes = touched_by(state, event)
                        self._touched_steps.update(touched_steps)
                        self._touched_nodes.update(touched_nodes)
                        apply(state, event)
                    self._recorded_to = max(self._recorded_to, stop)
                self._position = stop
                if stop % every == 0 and stop // every == len(self._checkpoints) + 1:
                    self._checkpoint()

    def _checkpoint(self) -> None:
        number = len(self._checkpoints) + 1
        for sid in self._touched_steps:
            self._step_versions.setdefault(sid, []).append(number)
        for name in self._touched_nodes:
            self._node_versions.setdefault(name, []).append(number)
        position = number * self.every
        crc = self.source.line_crc(position - 1)
        checkpoint = take(
            self._cursor, position, crc or 0, self._touched_steps, self._touched_nodes
        )
        self._checkpoints.append(checkpoint)
        if self._persist is not None and crc is not None:
            self._persist.append(checkpoint)
        self._touched_steps = set()
        self._touched_nodes = set()

    def _move_to_checkpoint(self, j: int) -> None:
        """Make the cursor the state as of checkpoint j (position j * every; 0: the start)."""
        every, count = self.every, len(self._checkpoints)
        low, high = sorted((j * every, self._position))
        between = self._checkpoints[low // every : min(-(-high // every), count)]
        nodes = set().union(*(c.nodes.keys() for c in between))
        state = self._cursor
        with paused_gc():
            if j * every > self._position:  # forward: each step's copy is in `between`
                self._steps_forward(state.steps, between)
            else:
                steps = set().union(*(c.steps.keys() for c in between))
                if high > count * every:  # beyond the last checkpoint
                    steps |= self._touched_steps
                self._swap_steps(state.steps, steps, j)
            if high > count * every:
                nodes |= self._touched_nodes
            self._swap_nodes(state.nodes, nodes, j)
        copy_run_fields(self._checkpoints[j - 1].run if j else self._initial_run, state)
        self._position = j * every

    def _swap_steps(self, target: dict[str, StepState], keys: set[str], j: int) -> None:
        """Set on each of the cursor's steps in `keys` what changes in a step, as of checkpoint
        j (the state is borrowed until the next move; a step's plan fields never change)."""
        checkpoints, find, get = self._checkpoints, bisect.bisect_right, self._step_versions.get
        pending = _PENDING_FIELDS
        for key in keys:
            fields = target[key].__dict__
            held = get(key)
            if held is None or held[0] > j:  # not started as of j (most of a long jump back)
                fields.update(pending)
                continue
            # its last copy as of j: most steps have one (most of a long jump forward)
            number = held[-1] if held[-1] <= j else held[find(held, j) - 1]
            fields.update(zip(CHANGING, checkpoints[number - 1].steps[key], strict=True))

    @staticmethod
    def _steps_forward(target: dict[str, StepState], between: list[Checkpoint]) -> None:
        """Moving forward to the last of `between`: each step they hold copies of gets its
        latest (read from the last checkpoint back; no lookup of where its copies are)."""
        done: set[str] = set()
        seen, add = done.__contains__, done.add
        for checkpoint in reversed(between):
            for key, version in checkpoint.steps.items():
                if not seen(key):
                    add(key)
                    target[key].__dict__.update(zip(CHANGING, version, strict=True))

    def _swap_nodes(self, target: dict[str, Any], keys: set[str], j: int) -> None:
        """Put in `target` a fresh copy of each node's state as of checkpoint j."""
        checkpoints, find, get = self._checkpoints, bisect.bisect_right, self._node_versions.get
        for key in keys:
            held = get(key)
            at = find(held, j) if held is not None else 0
            if held is not None and at:
                target[key] = copy_node(checkpoints[held[at - 1] - 1].nodes[key])
            else:
                target[key] = copy_node(self._initial_nodes[key])

    # ---------------------------------------------------------------- moving around

    def find(self, k: int, mark: str, forward: bool = True) -> int:
        """The position just after the next (or previous) event of `mark` from k."""
        test = MARKS[mark]
        indices = range(k, len(self.source)) if forward else range(k - 2, -1, -1)
        for i in indices:
            if test(self.source.kind(i)) and (
                mark != "failure" or self.source.event(i).outcome in FAILED_OUTCOMES  # type: ignore[attr-defined]
            ):
                return i + 1
        return len(self.source) if forward else 0

    def time_of(self, i: int) -> float:
        return self.source.event(i).time

    def index_at_time(self, moment: float) -> int:
        """How many events had happened at wall-clock time `moment`."""
        return bisect.bisect_right(range(len(self.source)), moment, key=self.time_of)

    def events(self, start: int, stop: int) -> list[ev.Event]:
        return self.source.events(start, stop)


# a step before the run: CHANGING's values of a fresh StepState
_PENDING_FIELDS = dict(
    zip(CHANGING, step_values(StepState("", "", "", "", "").__dict__), strict=True)
)


def journal_timeline(plan: Plan, index: JournalIndex) -> Timeline:
    """The timeline of a journal, with the checkpoints found valid beside it; for a finished
    run (or one no driver runs any more), the ones it makes past those are written there (a
    missing or stale file is rebuilt as the replay goes). A run a driver still runs is left
    to its engine, which writes its own."""
    path = timeline_path(index.path)
    identity = identity_of(index.header)
    with paused_gc():  # a hundred thousand records: the collector would rescan them all
        every, found = load(path, plan, identity, index.line_crc, len(index))
    persist = None
    finished = bool(len(index)) and index.kind(len(index) - 1) == ev.RunFinished.type
    if finished or not driver_alive(str(index.header.get("cloud", ""))):
        persist = CheckpointFile(path, identity, every or EVERY, keep=len(found))
    return Timeline(plan, index, checkpoint_every=EVERY, found=(every, found), persist=persist)
