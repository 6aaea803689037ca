"""The maintenance window as a run sees it: absolute, or opened when the run first started
(`start: now`), and what to say when a run is outside it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Window:
    start: float  # epoch seconds
    end: float
    relative: bool  # opened when the run first started

    def label(self) -> str:
        return f"{_utc(self.start)} to {_utc(self.end)}"

    def outside(self, now: float | None = None) -> str:
        """ "" inside the window, else one line saying where the run is against it."""
        now = time.time() if now is None else now
        if now < self.start:
            return f"the maintenance window is {self.label()} and it is now {_utc(now)}: not open"
        if now > self.end:
            return f"the maintenance window was {self.label()} and it is now {_utc(now)}: over"
        return ""


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%MZ")


def resolve(spec: Any, first_started: float | None) -> Window | None:
    """The inventory's window (core/inventory.py WindowSpec) for a run first started at
    `first_started` (None: starting now)."""
    if spec is None:
        return None
    if spec.start == "now":
        start = first_started if first_started is not None else time.time()
        return Window(start, start + float(spec.hours) * 3600, relative=True)
    begin = spec.start.timestamp()
    end = spec.end.timestamp() if spec.end is not None else begin + float(spec.hours) * 3600
    return Window(begin, end, relative=False)
