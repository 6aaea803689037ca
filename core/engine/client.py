"""The in-process client of a running engine: the client interface (core/client.py) onto an
Engine in the same process (`run --foreground`, tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from rollgate.core.client import ClientBase
from rollgate.core.engine import Engine
from rollgate.core.events import Command, Event
from rollgate.core.plan import Plan


class EngineClient(ClientBase):
    """Events straight from the engine's history; commands straight into its intake. Closing
    a console on it leaves the run paused: the engine lives in the console's process."""

    def __init__(self, engine: Engine, header: dict[str, Any]):
        self.engine = engine
        self.plan: Plan = engine.plan
        self.header = header

    def next_seq(self) -> int:
        """The sequence number of the next event (a resumed run's history is already there)."""
        history = self.engine.history
        return history[-1].seq + 1 if history else 1

    async def events(self, from_seq: int = 1) -> AsyncIterator[Event]:
        history = self.engine.history
        index = history.index_of_seq(from_seq)
        while True:
            while index < len(history):
                yield history[index]
                index += 1
            if self.engine.finished.is_set():
                return
            await self.engine.wait_for_event_after(index)

    async def send(self, command: Command) -> None:
        await self.engine.send(command)
