"""A journal opened for random access: its lines split at once, each event parsed when asked.

Opening a million-event journal costs reading the file and splitting it into lines; nothing is
parsed until a timeline folds it or a view shows it. `EventList` gives events already in memory
the same interface.
"""

from __future__ import annotations

import gc
import io
import itertools
import os
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, overload

import orjson

from rollgate.core.events import Event, StepOutput, event_from_dict
from rollgate.core.journal import (
    JOURNAL_FORMAT,
    JournalError,
    RecordReader,
    is_fragment,
    split_header,
    unreadable,
    unsealed,
)

TYPE_PREFIX = b'{"type":"'


class EventSource(Protocol):
    def __len__(self) -> int: ...
    def event(self, i: int) -> Event: ...
    def events(self, start: int, stop: int) -> list[Event]: ...
    def kind(self, i: int) -> str: ...
    def line_crc(self, i: int) -> int | None: ...


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

    def line_crc(self, i: int) -> int | None:
        return None  # not a journal: nothing to name a checkpoint by


class JournalIndex:
    """A journal's header and event lines; events are parsed, and verified (each line's
    integrity check, and its place: event i is the first event's seq + i), on demand."""

    def __init__(self, path: Path, header: dict[str, Any], lines: _Lines, torn_lines: int):
        self.path = path
        self.header = header
        self._lines = lines
        self.torn_lines = torn_lines  # fragments of lines cut short by a crash, skipped
        self.consumed = 0  # bytes read, up to the end of the last whole line
        self.lines_consumed = 0  # lines in those bytes
        self.reader = RecordReader(path, header)
        self._first_seq: int | None = None
        self._shared = _SharedLines()
        # the plan's record in the header line, not parsed (header["plan_layout"] says where
        # its phases are): the client builds the plan from it a phase at a time, then drops it
        self.plan_record: memoryview | None = None
        self._numbers: list[int] | None = None  # file line of each event, when lines were dropped

    @property
    def torn(self) -> bool:
        return self.torn_lines > 0

    @classmethod
    def open(cls, path: str | Path) -> JournalIndex:
        path = Path(path)
        try:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 (kept: lines are read later)
        except OSError as exc:
            raise unreadable(path, exc) from None
        with paused_gc():
            return cls._scan(path, file)

    @classmethod
    def _scan(cls, path: Path, file: io.FileIO) -> JournalIndex:
        """Find each event's line, a piece of the file at a time; only their places are kept
        (a million events: 16 MB, not the file's 450 MB twice over)."""
        head, ended = _first_line(file)
        if not head:
            raise JournalError(f"{path}: the journal is empty (the run never started)")
        header, plan_record = split_header(path, head)
        lines = _Lines(file)
        base = len(head) + ended  # the file offset where `carry` begins
        # bytes up to the last whole line, and lines in them, for followers
        consumed, newlines = (base, 1) if ended else (0, 0)
        del head
        file.seek(base)
        reader = io.BufferedReader(file, CHUNK)
        number = 1  # the file line last read (the header is 1)
        dropped = 0
        numbers: list[int] | None = None  # each event's line in the file, where they differ
        carry = b""
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                break
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            pieces = data[:cut].split(b"\n")
            pieces.pop()  # what follows the last newline: in `carry`
            whole = data.count(b"}\n", 0, cut) == len(pieces)
            del data
            if whole and numbers is None:  # the usual case: every line a whole event
                lines.extend(base, pieces)
            else:
                if numbers is None:
                    numbers = list(range(2, len(lines) + 2))
                offset = base
                for i, line in enumerate(pieces, start=number + 1):
                    if line.endswith(b"}"):
                        lines.extend(offset, [line])
                        numbers.append(i)
                    elif line:
                        if not is_fragment(line):
                            if header.get("format") == JOURNAL_FORMAT:
                                RecordReader(path, header).damaged(
                                    i, "it does not match its integrity check"
                                )
                            raise JournalError(
                                f"{path}:{i}: malformed event (not a JSON object); the journal "
                                "was edited or corrupted — restore it from a copy"
                            )
                        dropped += 1
                    offset += len(line) + 1
            number += len(pieces)
            newlines += len(pieces)
            base += cut
            consumed = base
        reader.detach()  # the file stays open: lines are read from it later
        if carry:  # no newline after it: written whole, or cut short by a crash
            try:
                orjson.loads(carry)
                if numbers is not None:
                    numbers.append(number + 1)
                lines.extend(base, [carry])
            except ValueError:
                dropped += 1
        index = cls(path, header, lines, dropped)
        index.consumed, index.lines_consumed = consumed, newlines
        index._numbers = numbers
        index.plan_record = plan_record
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
        """Events start..stop, their output lines shared with those read before (see
        _SharedLines)."""
        start, stop, _ = slice(start, stop).indices(len(self._lines))
        share = self._shared.share
        if self.reader.sealed:  # each checked as event() checks it, in one loop
            out: list[Event] = []
            seq = self._first() + start if stop > start else 0
            loads, make = orjson.loads, event_from_dict
            with paused_gc():
                for line in self._lines[start:stop]:
                    body = unsealed(line)
                    if body is None:
                        break
                    try:
                        event = make(share(loads(body)))
                    except (ValueError, TypeError):
                        break
                    if event.seq != seq:
                        break
                    out.append(event)
                    seq += 1
                else:
                    return out
                # the first that failed, read again to say what is wrong with it (raises)
                return out + [self.event(i) for i in range(start + len(out), stop)]
        loads, make = orjson.loads, event_from_dict
        with paused_gc():
            try:
                return [make(share(loads(line))) for line in self._lines[start:stop]]
            except (ValueError, TypeError):  # find the line, to name it
                return [self.event(i) for i in range(start, stop)]

    def line_crc(self, i: int) -> int | None:
        """The CRC-32 of event i's JSON object (a sealed line carries it), None past the end:
        what a timeline checkpoint names its event by (core/checkpoints.py)."""
        if not 0 <= i < len(self._lines):
            return None
        line = self._lines[i]
        if self.reader.sealed:
            body = unsealed(line)
            return zlib.crc32(body) if body is not None else None
        return zlib.crc32(line)

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


class _SharedLines:
    """One copy of each output line in the events read back: a replay that folds a journal
    keeps each step's last lines (its tail) and, without the engine's checkpoints, takes its
    own; a thousand computes print the same apt lines, and each parsed record had its own copy
    (a 1,000,000-event journal folded without its checkpoints peaked at 420 MB, 351 MB with
    the lines shared, the plan's reading being the peak). Forgets them all once it holds
    LIMIT distinct lines, so output that never repeats does not pile up."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def share(self, record: Any) -> Any:
        """`record` (an event's JSON object), its output lines replaced by shared copies."""
        if type(record) is dict and record.get("type") == _OUTPUT:
            lines = record.get("lines")
            if type(lines) is list:
                seen = self._seen
                if len(seen) > self.LIMIT:
                    seen.clear()
                # a line that is no string (an edited journal) raises TypeError if it cannot
                # be a key: the caller reads the event again alone, to name what is wrong
                record["lines"] = [seen.setdefault(line, line) for line in lines]
        return record


_OUTPUT = StepOutput.type
CHUNK = 8 << 20  # bytes read at a time while finding the lines


def _first_line(file: io.FileIO) -> tuple[bytes, bool]:
    """The file's first line without its newline, and whether it had one; read in one piece
    once its end is found (a header that holds the plan of 10,000 nodes is 100 MB: one copy
    of it, not several)."""
    at = 0
    while True:
        chunk = os.pread(file.fileno(), CHUNK, at)
        if not chunk:
            return (os.pread(file.fileno(), at, 0) if at else b""), False
        cut = chunk.find(b"\n")
        if cut >= 0:
            return os.pread(file.fileno(), at + cut, 0), True
        at += len(chunk)


BLOCK = 2048  # lines read back at a time (and the last few such blocks kept)


class _Lines:
    """The event lines of a journal file by their places: read back from the file a block at
    a time when asked, the last few blocks kept."""

    def __init__(self, file: io.FileIO):
        self._file = file
        self._starts = array("q")
        self._lengths = array("q")
        self._blocks: OrderedDict[int, list[bytes]] = OrderedDict()

    def extend(self, offset: int, lines: list[bytes]) -> None:
        """Lines that follow one another from `offset`, each ended by a newline."""
        if not lines:
            return
        lengths = list(map(len, lines))
        self._starts.extend(itertools.accumulate(map((1).__add__, lengths[:-1]), initial=offset))
        self._lengths.extend(lengths)

    def __len__(self) -> int:
        return len(self._lengths)

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...

    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            start, stop, _ = i.indices(len(self))
            out: list[bytes] = []
            while start < stop:
                block = self._block(start // BLOCK)
                at = start % BLOCK
                take = min(stop - start, BLOCK - at)
                out += block[at : at + take]
                start += take
            return out
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("journal line out of range")
        return self._block(i // BLOCK)[i % BLOCK]

    def _block(self, number: int) -> list[bytes]:
        block = self._blocks.get(number)
        if block is not None:
            self._blocks.move_to_end(number)
            return block
        low, high = number * BLOCK, min((number + 1) * BLOCK, len(self))
        first = self._starts[low]
        raw = os.pread(
            self._file.fileno(), self._starts[high - 1] + self._lengths[high - 1] - first, first
        )
        block = [
            raw[start - first : start - first + length]
            for start, length in zip(self._starts[low:high], self._lengths[low:high], strict=True)
        ]
        self._blocks[number] = block
        if len(self._blocks) > 8:
            self._blocks.popitem(last=False)
        return block


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
