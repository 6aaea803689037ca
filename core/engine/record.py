"""The run's record: every event the engine emits, masked, journalled, folded into the state
and handed to whoever follows; output lines buffered into StepOutput events.

An event is durable before the engine acts on it (`commit`); once RunFinished is emitted the
record is closed and nothing more is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from rollgate.core import events as ev
from rollgate.core.checkpoints import EVERY, CheckpointFile, Marks, timeline_path
from rollgate.core.history import History
from rollgate.core.journal import JournalWriteError, JournalWriter
from rollgate.core.plan import Plan
from rollgate.core.secrets import Secrets
from rollgate.core.state import RunState, apply


class Halted(Exception):
    """A branch of the run unwinds: the run is ending early (aborted, stopped, paused and left,
    a journal that cannot be written, a bug). Never leaves the engine."""


class RecordClosed(RuntimeError):
    """Something tried to write after RunFinished: a bug, never a user's doing."""


# The fields of each event that carry free text (command output, errors, comments, reasons,
# commands): masked for secret values and credential forms before they are journalled.
_FREE_TEXT: dict[type[ev.Event], tuple[str, ...]] = {
    ev.StepOutput: ("lines",),
    ev.StepStarted: ("command",),
    ev.StepFinished: ("error",),
    ev.GateOpened: ("title", "summary", "choices"),
    ev.GateDecided: ("comment", "operator"),
    ev.OperatorNote: ("text", "operator"),
    ev.RunPaused: ("reason", "operator"),
    ev.RunAborted: ("reason", "operator"),
    ev.RunFinished: ("error",),
    ev.NotificationFailed: ("error",),
    ev.StatusPollFailed: ("error",),
    ev.CleanupDone: ("error",),
}


class Record:
    def __init__(
        self,
        plan: Plan,
        secrets: Secrets,
        journal: JournalWriter | None,
        history: Iterable[ev.Event],
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        on_lost: Callable[[str], None],
        run_id: str = "",
    ):
        self.plan = plan
        self.secrets = secrets
        self.journal = journal
        self.clock = clock
        self.monotonic = monotonic
        self.on_lost = on_lost  # the journal cannot be written: the run must stop
        self.history = History()
        self.state = RunState.initial(plan)
        # timeline checkpoints beside the journal, written again from the start at each start
        self._marks: Marks | None = None
        if journal is not None:
            identity = {"run_id": run_id, "plan_digest": plan.digest}
            self._marks = Marks(CheckpointFile(timeline_path(journal.path), identity, EVERY))
        for event in history:
            json = event.to_json_bytes()
            if self._marks is not None:
                self._marks.before(self.state, event)
            apply(self.state, event)
            self.history.append(event, json)
            if self._marks is not None:
                self._marks.after(self.state, json)
        self.seq = self.state.last_seq
        self.closed = False  # RunFinished was emitted
        self.finished = asyncio.Event()  # ... and made durable: followers may stop
        self._new_event = asyncio.Event()
        self._followers = 0  # waiting in wait_for_event_after
        self._buffers: dict[tuple[str, str], list[str]] = {}

    def emit(self, cls: type[ev.Event], **fields: Any) -> ev.Event:
        if self.closed:
            raise RecordClosed(f"{cls.type} after the run finished")
        if cls is not ev.StepOutput and self._buffers:
            self.flush_output()
        for name in _FREE_TEXT.get(cls, ()):  # nothing secret reaches the journal or a view
            value = fields.get(name)
            if isinstance(value, str):
                fields[name] = self.secrets.mask(value)
            elif isinstance(value, tuple):
                fields[name] = tuple(self.secrets.mask(v) for v in value)
        self.seq += 1
        event = ev.build(
            cls, {"seq": self.seq, "time": self.clock(), "mono": self.monotonic(), **fields}
        )
        # durable before the engine acts on it: see commit
        json = self.journal.append(event) if self.journal is not None else None
        if self._marks is not None:
            self._marks.before(self.state, event)
        apply(self.state, event)
        self.history.append(event, json)
        if self._marks is not None and json is not None:
            self._marks.after(self.state, json)
        if cls is ev.RunFinished:
            self.closed = True
        if self._followers:  # told only when someone waits (an Event per event cost 1 µs)
            self._new_event.set()
            self._new_event = asyncio.Event()
        return event

    async def commit(self) -> None:
        """Make every event so far durable; called before the engine acts on them (starting a
        command, waiting at or answering a gate). Branches that get here together share one
        fsync. A journal that cannot be written stops the run: nothing is acted on that is
        not on disk (raises Halted)."""
        if self.journal is None:
            return
        try:
            await self.journal.commit()
        except JournalWriteError as exc:
            self.on_lost(str(exc))
            raise Halted from None

    def close(self) -> None:
        """The run is over and durable (or its journal lost): followers stop waiting."""
        if self._marks is not None:
            self._marks.file.close()
        self.finished.set()
        self._new_event.set()

    async def wait_for_event_after(self, count: int) -> None:
        """Wait until history holds more than `count` events or the run finished."""
        while len(self.history) <= count and not self.finished.is_set():
            waiter = self._new_event
            done = asyncio.ensure_future(self.finished.wait())
            more = asyncio.ensure_future(waiter.wait())
            self._followers += 1
            try:
                await asyncio.wait({more, done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._followers -= 1
                done.cancel()
                more.cancel()

    # ---------------------------------------------------------------- output

    def collector(self, step: str) -> Callable[[str, str], None]:
        """Where a running step's output lines go until they are flushed as events."""

        def collect(stream: str, line: str) -> None:
            self._buffers.setdefault((step, stream), []).append(line)

        return collect

    def flush_output(self, step_id: str | None = None) -> None:
        if not self._buffers:
            return
        for key in list(self._buffers):
            if step_id is not None and key[0] != step_id:
                continue
            lines = self._buffers.pop(key)
            if lines:
                self.emit(ev.StepOutput, step=key[0], stream=key[1], lines=tuple(lines))
