"""A journal opened for random access: its lines split at once, each event parsed when asked.

Opening a million-event journal costs reading the file and splitting it into lines; nothing is
parsed until a timeline folds it or a view shows it. `EventList` gives events already in memory
the same interface.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson

from rollgate.core.events import Event, event_from_dict
from rollgate.core.journal import (
    JOURNAL_FORMAT,
    JournalError,
    RecordReader,
    is_fragment,
    journal_bytes,
    parse_header,
    unsealed,
)

TYPE_PREFIX = b'{"type":"'


class EventSource(Protocol):
    def __len__(self) -> int: ...
    def event(self, i: int) -> Event: ...
    def events(self, start: int, stop: int) -> list[Event]: ...
    def kind(self, i: int) -> str: ...


class EventList:
    """Events in memory (a live run, a test) as an EventSource."""

    def __init__(self, events: Sequence[Event]):
        self._events = events

    def __len__(self) -> int:
        return len(self._events)

    def event(self, i: int) -> Event:
        return self._events[i]

    def events(self, start: int, stop: int) -> list[Event]:
        return list(self._events[start:stop])

    def kind(self, i: int) -> str:
        return self._events[i].type


class JournalIndex:
    """A journal's header and event lines; events are parsed, and verified (each line's
    integrity check, and its place: event i is the first event's seq + i), on demand."""

    def __init__(self, path: Path, header: dict[str, Any], lines: list[bytes], torn_lines: int):
        self.path = path
        self.header = header
        self._lines = lines
        self.torn_lines = torn_lines  # fragments of lines cut short by a crash, skipped
        self.consumed = 0  # bytes read, up to the end of the last whole line
        self.lines_consumed = 0  # lines in those bytes
        self.reader = RecordReader(path, header)
        self._first_seq: int | None = None
        self._numbers: list[int] | None = None  # file line of each event, when lines were dropped

    @property
    def torn(self) -> bool:
        return self.torn_lines > 0

    @classmethod
    def open(cls, path: str | Path) -> JournalIndex:
        path = Path(path)
        data = journal_bytes(path)
        with paused_gc():
            return cls._split(path, data)

    @classmethod
    def _split(cls, path: Path, data: bytes) -> JournalIndex:
        consumed = data.rfind(b"\n") + 1  # bytes up to the last whole line, for followers
        closed = data.count(b"}\n")  # lines that end their JSON object
        raw = data.split(b"\n")
        newlines = len(raw) - 1
        del data
        header = parse_header(path, raw[0])
        last = raw.pop() if len(raw) > 1 else b""  # what follows the last newline
        body = raw[1:]
        del raw
        dropped = 0
        numbers: list[int] | None = None  # each event's line in the file, where they differ
        if closed != newlines:  # a fragment (a crash, then a resume) or an empty line
            for number, line in enumerate(body, start=2):
                if line and not line.endswith(b"}") and not is_fragment(line):
                    if header.get("format") == JOURNAL_FORMAT:
                        RecordReader(path, header).damaged(
                            number, "it does not match its integrity check"
                        )
                    raise JournalError(
                        f"{path}:{number}: malformed event (not a JSON object); the journal "
                        "was edited or corrupted — restore it from a copy"
                    )
            numbers = [n for n, line in enumerate(body, start=2) if line.endswith(b"}")]
            whole = [line for line in body if line.endswith(b"}")]
            dropped = len(body) - len(whole) - body.count(b"")
            body = whole
        if last:  # no newline after it: written whole, or cut short by a crash
            try:
                orjson.loads(last)
                if numbers is not None:
                    numbers.append(newlines + 1)
                body.append(last)
            except ValueError:
                dropped += 1
        index = cls(path, header, body, dropped)
        index.consumed, index.lines_consumed = consumed, newlines
        index._numbers = numbers
        return index

    def __len__(self) -> int:
        return len(self._lines)

    def line_number(self, i: int) -> int:
        """The line of the file event `i` is on (the header is line 1)."""
        return self._numbers[i] if self._numbers is not None else i + 2

    def event(self, i: int) -> Event:
        line = self._lines[i]
        if not self.reader.sealed:
            try:
                return event_from_dict(orjson.loads(line))
            except (ValueError, TypeError) as exc:
                raise JournalError(
                    f"{self.path}: event {i + 1} is malformed ({exc}); the journal was edited "
                    "or corrupted — restore it from a copy"
                ) from None
        body = unsealed(line)
        if body is None:
            self.reader.damaged(self.line_number(i), "it does not match its integrity check")
        try:
            event = event_from_dict(orjson.loads(body))
        except (ValueError, TypeError) as exc:
            self.reader.damaged(self.line_number(i), f"it is sealed but malformed ({exc})")
        expected = self._first() + i
        if event.seq != expected:
            what = "missing" if event.seq > expected else "repeated"
            self.reader.damaged(
                self.line_number(i),
                f"event {event.seq} stands where event {expected} belongs: records are {what}",
            )
        return event

    def _first(self) -> int:
        """The seq of the journal's first event (each after it is one more)."""
        if self._first_seq is None:
            body = unsealed(self._lines[0]) if self.reader.sealed else self._lines[0]
            if body is None:
                self.reader.damaged(self.line_number(0), "it does not match its integrity check")
            self._first_seq = int(orjson.loads(body).get("seq", 1))
        return self._first_seq

    def events(self, start: int, stop: int) -> list[Event]:
        start, stop, _ = slice(start, stop).indices(len(self._lines))
        if self.reader.sealed:
            with paused_gc():
                return [self.event(i) for i in range(start, stop)]
        loads, make = orjson.loads, event_from_dict
        with paused_gc():
            try:
                return [make(loads(line)) for line in self._lines[start:stop]]
            except (ValueError, TypeError):  # find the line, to name it
                return [self.event(i) for i in range(start, stop)]

    def kind(self, i: int) -> str:
        """The event's type, read off the line without parsing it."""
        line = self._lines[i]
        if line.startswith(TYPE_PREFIX):
            end = line.find(b'"', len(TYPE_PREFIX))
            if end > 0:
                return line[len(TYPE_PREFIX) : end].decode()
        return self.event(i).type

    def __iter__(self) -> Iterator[Event]:
        for i in range(len(self._lines)):
            yield self.event(i)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Build many objects without the cyclic collector rescanning them all each time
    (parsing a million events is twice as fast); the collector is on again afterwards exactly
    as it was. Events and states hold no reference cycles, so reference counting alone frees
    them. Keeping what was built out of later passes (`gc.freeze`) is the entry points'
    choice (tui/gc_policy.py), not the library's."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
