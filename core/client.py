"""The one interface everything that watches or steers a run uses: events in, commands out.

`RunClient` is the protocol every view (console, headless view, replay, watch) talks to:
`events(from_seq)` replays what happened from that sequence number and then follows the run
live; `send` delivers an operator command or raises CommandRejected saying why not;
`attached()` names the consoles attached to the run's engine; `driver_gone` says the run is
no longer driven (its engine was lost). Implementations: the engine in this process
(core/engine/client.py), a detached engine's control socket (core/control.py), and a journal,
read-only (`JournalClient`, for `replay` and `watch`). Views never import the engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rollgate.core.errors import UserError
from rollgate.core.events import Command, Event, RunFinished
from rollgate.core.journal import JournalError, JournalTail
from rollgate.core.journal_index import JournalIndex, paused_gc
from rollgate.core.runs import driver_alive, resolve_journal

if TYPE_CHECKING:  # the plan's models are imported where a plan is read: `status` needs none
    from rollgate.core.plan import Plan


class CommandRejected(Exception):
    """A command that does not fit the run's current state (no gate open, wrong option), or
    that this client cannot deliver; the message says why."""


class ReadOnlyError(CommandRejected):
    """This client only watches; commands go to the console that drives the run."""


class EngineGone(Exception):
    """Nothing answers on the run's control socket."""


class NotTheEngine(EngineGone):
    """What answers on the run's control socket is not the run's engine (another user's
    process): nothing is sent to it."""


class RunClient(Protocol):
    plan: Plan
    header: dict[str, Any]
    read_only: bool  # commands are refused: it only watches
    detachable: bool  # a console on it may leave while the run goes on (a detached engine)
    driver_gone: bool  # nobody drives the run any more (its engine was lost)

    def events(self, from_seq: int = 1) -> AsyncIterator[Event]: ...

    async def send(self, command: Command) -> None: ...

    async def attached(self) -> list[str]:
        """Who else has a console attached to the run's engine."""
        ...


class ClientBase:
    """What a client that watches and steers nothing special says: it drives no detached
    engine, nobody else is attached, its driver is not lost. Implementations override."""

    read_only = False
    detachable = False
    driver_gone = False
    header: dict[str, Any] = {}

    async def attached(self) -> list[str]:
        return []


class JournalClient(ClientBase):
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
        self.index.reader.last_seq = last or None  # the tail goes on from the last event read
        tail = JournalTail(
            self.path, self.index.consumed, self.index.lines_consumed, self.index.reader
        )
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


def journal_plan(path: Path, header: dict[str, Any]) -> Plan | None:
    """The plan in the header of the journal at `path`, built a phase at a time, when that
    journal can be read and is the run `header` describes (its id and plan digest); else None
    (another login's journal, one written otherwise, or not this run's)."""
    from rollgate.core.journal import split_header
    from rollgate.core.plan import plan_from_record

    try:
        with path.open("rb") as file:
            line = file.readline().rstrip(b"\n")
        found, record = split_header(path, line)
        if record is None or any(found.get(k) != header.get(k) for k in ("run_id", "plan_digest")):
            return None
        with paused_gc():
            plan = plan_from_record(record, found["plan_layout"])
    except (OSError, UserError, ValueError, KeyError, TypeError):
        return None
    return plan if plan.digest == header.get("plan_digest") else None


def open_journal_client(ref: str, *, follow: bool = False) -> JournalClient:
    """A client for a run id or journal path (the plan comes from the journal's header)."""
    from rollgate.core.plan import Plan, plan_from_record

    path = resolve_journal(ref)
    index = JournalIndex.open(path)
    if index.plan_record is not None:  # built a phase at a time, then let go
        try:
            with paused_gc():
                plan = plan_from_record(index.plan_record, index.header["plan_layout"])
        except (ValueError, KeyError, TypeError) as exc:
            raise JournalError(
                f"{path}:1: the journal's plan does not read back ({exc}); the journal was "
                "edited or corrupted — restore it from a copy"
            ) from None
        index.plan_record = None
        return JournalClient(index, plan, follow=follow)
    # the plan's record leaves the header once it is a Plan: at 10,000 nodes the two were
    # 450 MB of a replay's memory
    plan_data = index.header.pop("plan", None)
    if plan_data is None:
        plan_file = path.parent / "plan.json"
        if not plan_file.is_file():
            raise UserError(f"{path}: the journal has no plan and no plan.json beside it")
        plan_data = json.loads(plan_file.read_text())
    with paused_gc():
        plan = Plan.from_dict(plan_data, consume=True)
    return JournalClient(index, plan, follow=follow)
