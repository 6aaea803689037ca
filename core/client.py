"""The one interface everything that watches or steers a run uses: events in, commands out.

`RunClient` is a protocol narrow enough to carry over a local socket later: `events(from_seq)`
replays what happened from that sequence number and then follows the run live; `send` delivers
an operator command. `EngineClient` is the in-process implementation; a read-only client (for
`replay` and `watch`) refuses `send`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

from rollgate.core.engine import CommandRejected, Engine
from rollgate.core.errors import UserError
from rollgate.core.events import Command, Event, RunFinished
from rollgate.core.journal import JournalTail
from rollgate.core.journal_index import JournalIndex, paused_gc
from rollgate.core.plan import Plan
from rollgate.core.runs import driver_alive, resolve_journal


class ReadOnlyError(CommandRejected):
    """This client only watches; commands go to the console that drives the run."""


class RunClient(Protocol):
    plan: Plan
    header: dict[str, Any]
    read_only: bool

    def events(self, from_seq: int = 1) -> AsyncIterator[Event]: ...

    async def send(self, command: Command) -> None: ...


class EngineClient:
    """In-process client of a running Engine."""

    read_only = False

    def __init__(self, engine: Engine, header: dict[str, Any]):
        self.engine = engine
        self.plan = engine.plan
        self.header = header

    def next_seq(self) -> int:
        """The sequence number of the next event (a resumed run's history is already there)."""
        history = self.engine.history
        return history[-1].seq + 1 if history else 1

    async def events(self, from_seq: int = 1) -> AsyncIterator[Event]:
        history = self.engine.history
        index = next((i for i, e in enumerate(history) if e.seq >= from_seq), len(history))
        while True:
            while index < len(history):
                yield history[index]
                index += 1
            if self.engine.finished.is_set():
                return
            await self.engine.wait_for_event_after(index)

    async def send(self, command: Command) -> None:
        await self.engine.send(command)


class JournalClient:
    """A read-only client over a journal: its events, then (with `follow`) whatever the
    driving console appends, for `rollgate watch` and replay."""

    read_only = True

    def __init__(
        self,
        index: JournalIndex,
        plan: Plan,
        *,
        follow: bool = False,
        poll: float = 0.2,
    ):
        self.path = index.path
        self.index = index  # the events, parsed when read
        self.plan = plan
        self.header = index.header
        self.follow = follow
        self.poll = poll
        self.torn = index.torn  # the journal ended mid-line (a crash); events stop at the tear
        self.driver_gone = False  # following: no process holds the run's lock any more

    def all_events(self) -> list[Event]:
        """Every event the journal held when opened, parsed."""
        return self.index.events(0, len(self.index))

    async def events(self, from_seq: int = 1) -> AsyncIterator[Event]:
        last = 0
        ended = False  # the driver finished the run: a follower has nothing more to wait for
        chunk = 5000
        for start in range(0, len(self.index), chunk):
            for event in self.index.events(start, start + chunk):
                if event.seq >= from_seq:
                    yield event
                last = event.seq
                ended = isinstance(event, RunFinished)
            await asyncio.sleep(0)
        if not self.follow or ended:
            return
        tail = JournalTail(self.path, self.index.consumed, self.index.lines_consumed)
        cloud = str(self.header.get("cloud", ""))
        checked = 0.0
        while True:
            await asyncio.sleep(self.poll)
            now = asyncio.get_running_loop().time()
            if now - checked >= 1.0:  # is anyone still driving it?
                checked = now
                self.driver_gone = not driver_alive(cloud)
            for event in tail.read_new():
                if event.seq > last:
                    last = event.seq
                    yield event
                    if isinstance(event, RunFinished):
                        return

    async def send(self, command: Command) -> None:
        raise ReadOnlyError(
            "this console only watches; decisions are taken in the console that drives the run"
        )


def open_journal_client(ref: str, *, follow: bool = False) -> JournalClient:
    """A client for a run id or journal path (the plan comes from the journal's header)."""
    path = resolve_journal(ref)
    index = JournalIndex.open(path)
    plan_data = index.header.get("plan")
    if plan_data is None:
        plan_file = path.parent / "plan.json"
        if not plan_file.is_file():
            raise UserError(f"{path}: the journal has no plan and no plan.json beside it")
        plan_data = json.loads(plan_file.read_text())
    with paused_gc():
        plan = Plan.from_dict(plan_data)
    return JournalClient(index, plan, follow=follow)
