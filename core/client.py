"""The one interface everything that watches or steers a run uses: events in, commands out.

`RunClient` is a protocol narrow enough to carry over a local socket later: `events(from_seq)`
replays what happened from that sequence number and then follows the run live; `send` delivers
an operator command. `EngineClient` is the in-process implementation; a read-only client (for
`replay` and `watch`) refuses `send`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from core.engine import CommandRejected, Engine
from core.events import Command, Event
from core.plan import Plan


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
