"""The journal: a run's events as JSON Lines (mode 0600), durable before the engine acts.

Line 1 is a header: {"format": JOURNAL_FORMAT, tool_version, run_id, cloud, inventory,
inventory_digest, plan_digest, operator, host, created}. Every later line is one event.
State-changing events are written, flushed and fsynced before the engine goes on; output
events are buffered and written at most FLUSH_INTERVAL later (or before the next state change).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.events import Event, event_from_dict

JOURNAL_FORMAT = "rollgate.journal/1"
FLUSH_INTERVAL = 0.1


class JournalError(UserError):
    """The journal cannot be read; the message names the file and line."""


class JournalWriter:
    """Appends events; `fsync` False is only for benchmarks that measure without it."""

    def __init__(self, path: Path, header: dict[str, Any] | None, *, fsync: bool = True):
        self.path = path
        self._fsync = fsync
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._pending: list[str] = []
        self._oldest_pending = 0.0
        if os.fstat(fd).st_size == 0:
            if header is None:
                raise ValueError("a new journal needs a header")
            self._file.write(json.dumps({"format": JOURNAL_FORMAT, **header}) + "\n")
            self._sync()
        else:
            self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """A crash mid-line leaves a fragment; end it with a newline so appends stay whole."""
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                self._file.write("\n")
                self._sync()

    def write(self, event: Event) -> None:
        line = event.to_json() + "\n"
        if not event.durable:
            if not self._pending:
                self._oldest_pending = time.monotonic()
            self._pending.append(line)
            if time.monotonic() - self._oldest_pending >= FLUSH_INTERVAL:
                self.flush()
            return
        self._pending.append(line)
        self.flush()

    def flush(self) -> None:
        """Write buffered lines and make them durable."""
        if not self._pending:
            return
        self._file.write("".join(self._pending))
        self._pending.clear()
        self._sync()

    def _sync(self) -> None:
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self.flush()
        self._file.close()


@dataclass
class JournalContents:
    header: dict[str, Any]
    events: list[Event]
    torn: bool  # a line was cut short by a crash mid-write and was skipped
    torn_lines: int = 0  # how many (a resumed run leaves earlier fragments mid-file)


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        yield from enumerate(f, start=1)


def read_journal(path: str | Path) -> JournalContents:
    """Read a whole journal; a torn line (crash mid-write) is skipped and reported."""
    path = Path(path)
    try:
        lines = list(iter_lines(path))
    except FileNotFoundError:
        raise JournalError(
            f"{path}: no such journal; give a run id from `rollgate runs` or "
            "the path of a journal.jsonl"
        ) from None
    except OSError as exc:
        raise JournalError(f"{path}: cannot read the journal: {exc.strerror}") from None
    if not lines:
        raise JournalError(f"{path}: the journal is empty (the run never started)")
    try:
        header = json.loads(lines[0][1])
    except ValueError:
        raise JournalError(f"{path}:1: not a Rollgate journal (no header line)") from None
    if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
        raise JournalError(
            f"{path}:1: not a {JOURNAL_FORMAT} journal "
            f"(format {header.get('format') if isinstance(header, dict) else None!r})"
        )
    events: list[Event] = []
    torn = False
    torn_lines = 0
    for number, raw in lines[1:]:
        last = number == lines[-1][0]
        complete = raw.endswith(b"\n")
        try:
            data = json.loads(raw)
            events.append(event_from_dict(data))
        except (ValueError, TypeError) as exc:
            # A fragment: either the last line without its newline (a crash mid-write), or a
            # fragment a resumed run closed with a newline and then appended after.
            if (last and not complete) or _is_fragment(raw, lines, number):
                torn_lines += 1
                torn = True
                continue
            raise JournalError(
                f"{path}:{number}: malformed event ({exc}); the journal was "
                "edited or corrupted — restore it from a copy"
            ) from None
    return JournalContents(header, events, torn, torn_lines)


def _is_fragment(raw: bytes, lines: list[tuple[int, bytes]], number: int) -> bool:
    """A cut-short event line: it starts like one and never closes its object."""
    return raw.startswith(b'{"type":') and not raw.rstrip().endswith(b"}")
