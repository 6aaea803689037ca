"""The journal: a run's events as JSON Lines (mode 0600), durable before the engine acts.

Line 1 is a header: {"format": JOURNAL_FORMAT, tool_version, run_id, cloud, inventory,
inventory_digest, plan_digest, operator, host, created, plan}. Every later line is one event.

Each line carries its own integrity check (format 2): the CRC-32 of the line's JSON object,
as its last field `"crc"`, and events number themselves (`seq`, one more each line). Every
reader verifies both as it reads: a line changed on disk (a flipped bit), or a line lost or
repeated, is named with its line and run, and the reader stops there, leaving the whole part
before it in `<journal>.recovered`. Why a CRC per line and not a hash chain: damage is found
by a read of that line alone (a seek reads from where it lands, not from the first line), and
what a chain adds (noticing a forged rewrite) no checksum gives against someone who can write
the file; the file is its owner's alone (0600).

Two ways to write. `write` makes a state-changing event durable (written and fsynced) before
it returns and buffers output for at most FLUSH_INTERVAL. The engine instead `append`s and
awaits `commit()` before it acts: steps finishing together share one fsync (group commit),
which keeps the same promise (nothing is acted on before it is on disk) at thousands of events
per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import orjson

from rollgate.core.errors import UserError
from rollgate.core.events import Event, event_from_dict

JOURNAL_FORMAT = "rollgate.journal/2"
UNSEALED_FORMAT = "rollgate.journal/1"  # before the integrity checks: read, never verified
FORMATS = (JOURNAL_FORMAT, UNSEALED_FORMAT)
FLUSH_INTERVAL = 0.1

_SEAL = b',"crc":"'
_SEALED_TAIL = len(_SEAL) + 8 + 2  # ,"crc":"1234abcd"}


def seal(body: bytes) -> bytes:
    """A record as written: its JSON object, with the CRC-32 of the object's text last."""
    return b'%s%s%08x"}' % (body[:-1], _SEAL, zlib.crc32(body))


def unsealed(line: bytes) -> bytes | None:
    """A sealed record's JSON object, or None when the record does not match its seal."""
    if len(line) <= _SEALED_TAIL or line[-_SEALED_TAIL:-10] != _SEAL or line[-2:] != b'"}':
        return None
    body = line[:-_SEALED_TAIL] + b"}"
    try:
        expected = int(line[-10:-2], 16)
    except ValueError:
        return None
    return body if zlib.crc32(body) == expected else None


class JournalError(UserError):
    """The journal cannot be read; the message names the file and line."""


class JournalDamaged(JournalError):
    """A record does not match its integrity check, or records are missing or repeated."""


class JournalWriteError(UserError):
    """The journal could not be written, or is no longer the file the run opened: the run
    must stop, since nothing may be acted on that is not on disk."""

    exit_code = 1

    def __init__(self, message: str, *, lost: bool = False):
        super().__init__(message)
        self.lost = lost  # the file itself is gone or shorter, not just one write


class JournalWriter:
    """Appends events; `fsync` False is only for benchmarks and fixtures that need no crash
    safety."""

    def __init__(self, path: Path, header: dict[str, Any] | None, *, fsync: bool = True):
        self.path = path
        self._fsync = fsync
        self._fd, created = self._open(path, header)
        os.fchmod(self._fd, 0o600)
        self._pending: list[bytes] = []
        self._oldest_pending = 0.0
        self._appended = 0  # lines handed to us
        self._durable = 0  # of those, lines known to be on disk
        self._syncing: asyncio.Future[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []  # callers of commit, until it is done
        self._closed = False
        self.failed: JournalWriteError | None = None  # once set, nothing more is written
        stat = os.fstat(self._fd)
        self._identity = (stat.st_dev, stat.st_ino)
        self._size = stat.st_size  # what is on file: it is never shorter while we write
        if created:  # its header went in whole before the name existed
            self._appended = self._durable = 1
        elif stat.st_size == 0:  # an empty file made by hand: the header goes in first
            if header is None:
                raise ValueError("a new journal needs a header")
            self._pending.append(seal(orjson.dumps({"format": JOURNAL_FORMAT, **header})) + b"\n")
            self._appended += 1
            self.flush()
        else:
            self._repair_torn_tail()
        # for a recovered copy, should the file vanish: compressed, as the plan of 10,000
        # nodes makes it 100 MB (it compresses twenty-fold), and read a piece at a time
        packer = zlib.compressobj(1)
        packed = []
        with open(self.path, "rb") as f:
            start = piece = f.readline(1 << 20)
            while piece:
                packed.append(packer.compress(piece))
                piece = f.readline(1 << 20) if not piece.endswith(b"\n") else b""
        self._header_packed = b"".join([*packed, packer.flush()])
        # a journal begun before the integrity checks goes on without them, all alike
        self._sealed = not start.startswith(b'{"format":"' + UNSEALED_FORMAT.encode())

    def _open(self, path: Path, header: dict[str, Any] | None) -> tuple[int, bool]:
        """The journal's descriptor for appending, and whether this call created it. A new
        journal appears under its name with its header already whole (written beside it,
        then linked into place): a reader (`watch`, a resume) never finds it empty or with
        half a header, and a crash leaves either no journal or one that reads back."""
        try:
            return os.open(path, os.O_WRONLY | os.O_APPEND), False
        except FileNotFoundError:
            if header is None:
                raise ValueError("a new journal needs a header") from None
        body = orjson.dumps({"format": JOURNAL_FORMAT, **header})
        beside = path.with_name(f".{path.name}.{os.getpid()}.new")
        fd = os.open(beside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            # sealed in pieces: a plan of 10,000 nodes makes the header 100 MB, and each copy
            # of it would be one more of those
            tail = b'%s%08x"}\n' % (_SEAL, zlib.crc32(body))  # as seal() ends a record
            for piece in (memoryview(body)[:-1], memoryview(tail)):
                view = piece
                while view:
                    view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
            os.link(beside, path)  # never replaces: a journal made meanwhile is kept
        except FileExistsError:
            os.close(fd)
            return os.open(path, os.O_WRONLY | os.O_APPEND), False
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(beside)
        if self._fsync:  # the new name is durable too
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return fd, True

    def _repair_torn_tail(self) -> None:
        """A crash mid-line leaves a fragment; end it with a newline so appends stay whole."""
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                os.write(self._fd, b"\n")
                self._size += 1
                self._sync_now()

    def append(self, event: Event) -> bytes:
        """Buffer an event; it is on disk once a later `commit()` or `flush()` returns.
        Returns its JSON record (without the seal)."""
        if not self._pending:
            self._oldest_pending = time.monotonic()
        body = event.to_json_bytes()
        self._pending.append(self._line(body))
        self._appended += 1
        return body

    def _line(self, body: bytes) -> bytes:
        """An event's JSON record as a journal line (sealed where the journal is)."""
        if self._sealed:  # seal(body) and the newline, in one copy
            return b'%s%s%08x"}\n' % (body[:-1], _SEAL, zlib.crc32(body))
        return body + b"\n"

    def write(self, event: Event) -> None:
        """Append; a state change is durable on return, output within FLUSH_INTERVAL."""
        self.append(event)
        if event.durable or time.monotonic() - self._oldest_pending >= FLUSH_INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Write buffered lines and make them durable, now."""
        upto = self._appended
        self._write_pending()
        if self._durable < upto:
            self._sync_now()
            self._durable = upto

    async def commit(self) -> None:
        """Make every event appended so far durable; concurrent callers share one fsync."""
        target = self._appended
        while self._durable < target:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._sync_pending())
            # a future of its own, not the sync's: cancelling one waiter cancels only it
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def _sync_pending(self) -> None:
        """Write and fsync what is pending, then wake the callers of commit (an error goes
        to each of them, not to this task, which nobody awaits)."""
        failed: BaseException | None = None
        try:
            upto = self._appended
            self._write_pending()
            if self._fsync:
                try:
                    await asyncio.to_thread(os.fsync, self._fd)
                except OSError as exc:
                    if not self._closed:
                        self._fail_write(exc)
                    # closed meanwhile: close() wrote and fsynced everything itself
            self._durable = max(self._durable, upto)
        except asyncio.CancelledError as exc:
            failed = exc
            raise
        except Exception as exc:
            failed = exc
        finally:
            self._syncing = None
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if waiter.done():
                    continue
                if failed is None:
                    waiter.set_result(None)
                elif isinstance(failed, asyncio.CancelledError):
                    waiter.cancel()
                else:
                    waiter.set_exception(failed)

    def _write_pending(self) -> None:
        if self.failed is not None:
            raise self.failed
        self._check_same_file()
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                self._fail_write(exc)
            self._size += len(data)

    def _fail_write(self, exc: OSError) -> None:
        """A write failed part-way: cut the file back to its last whole line, so it reads
        back whole, and refuse every later write."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)
        self.failed = JournalWriteError(
            f"{self.path}: the journal could not be written ({exc.strerror or exc}); the run "
            "stopped. Free space (or fix the file system), then resume the run"
        )
        raise self.failed

    def _check_same_file(self) -> None:
        """The file must still be the one we opened, at least as long as what we wrote:
        a journal deleted, replaced or truncated under a run loses the record of it."""
        try:
            now = os.stat(self.path)
        except OSError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != self._identity:
            what = "was deleted or replaced"
        elif now.st_size < self._size:
            what = f"was truncated ({now.st_size} bytes, {self._size} written)"
        else:
            return
        self.failed = JournalWriteError(
            f"{self.path}: the journal {what} while the run wrote it; the run stopped. A copy "
            "of everything it recorded is beside it (.recovered)",
            lost=True,
        )
        raise self.failed

    def _sync_now(self) -> None:
        if self._fsync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._fail_write(exc)

    @property
    def lost(self) -> bool:
        """The file is no longer what the run wrote (deleted, replaced or truncated)."""
        return self.failed is not None and self.failed.lost

    def recover(self, events: Iterable[Event]) -> Path:
        """Write the header and `events` (the run's whole history, from memory) beside the
        journal as `<name>.recovered` (0600): what a deleted or truncated journal lost."""
        target = self.path.with_name(self.path.name + ".recovered")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(zlib.decompress(self._header_packed))
            out.writelines(self._line(e.to_json_bytes()) for e in events)
            out.flush()
            os.fsync(out.fileno())
        return target

    def close(self) -> None:
        with contextlib.suppress(JournalWriteError):
            self.flush()
        self._closed = True
        os.close(self._fd)


@dataclass
class JournalContents:
    header: dict[str, Any]
    events: list[Event]
    torn: bool  # a line was cut short by a crash mid-write and was skipped
    torn_lines: int = 0  # how many (a resumed run leaves earlier fragments mid-file)


def unreadable(path: Path, exc: OSError) -> JournalError:
    """The one-line error for a journal that cannot be opened or read."""
    if isinstance(exc, FileNotFoundError):
        return JournalError(
            f"{path}: no such journal; give a run id from `rollgate runs` or "
            "the path of a journal.jsonl"
        )
    return JournalError(f"{path}: cannot read the journal: {exc.strerror}")


def journal_bytes(path: Path) -> bytes:
    """A journal file's contents; a missing, unreadable or empty file is a one-line error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise unreadable(path, exc) from None
    if not data:
        raise JournalError(f"{path}: the journal is empty (the run never started)")
    return data


def read_journal(path: str | Path) -> JournalContents:
    """Read a whole journal; a torn line (crash mid-write) is skipped and reported, a damaged
    one stops the read (JournalDamaged)."""
    path = Path(path)
    data = journal_bytes(path)
    lines = data.split(b"\n")
    header = parse_header(path, lines[0])
    reader = RecordReader(path, header)
    del lines[0]
    events, torn_lines = reader.events(lines, 2)
    return JournalContents(header, events, torn_lines > 0, torn_lines)


def seal_holds(line: bytes) -> bool:
    """Whether a sealed record matches its seal, checked without copying it (a header that
    holds the plan of 10,000 nodes is 100 MB)."""
    if len(line) <= _SEALED_TAIL or line[-_SEALED_TAIL:-10] != _SEAL or line[-2:] != b'"}':
        return False
    try:
        expected = int(line[-10:-2], 16)
    except ValueError:
        return False
    return zlib.crc32(b"}", zlib.crc32(memoryview(line)[:-_SEALED_TAIL])) == expected


_PLAN_AT = b',"plan":{"format":"rollgate.plan/'


def split_header(path: Path, line: bytes) -> tuple[dict[str, Any], memoryview | None]:
    """The header, and its plan's record as it lies in `line` (not parsed) when the header
    says where its phases are (`plan_layout`, written before the plan); else the header
    parsed whole, plan included, and None."""
    at = line.find(_PLAN_AT)
    if at < 0 or line.find(b'"plan_layout":', 0, at) < 0:
        return parse_header(path, line), None
    sealed = line.startswith(b'{"format":"' + JOURNAL_FORMAT.encode())
    if sealed and not seal_holds(line):
        parse_header(path, line)  # raises, naming the damage
    try:
        before = orjson.loads(line[:at] + b"}")
        start = at + len(b',"plan":')
        end = start + int(before["plan_layout"]["length"])
        rest = line[end:]
        after = orjson.loads(b"{" + rest[1:]) if rest.startswith(b",") else {}
        if line[end - 1 : end] != b"}" or not (rest.startswith(b",") or rest == b"}"):
            raise ValueError("the plan does not end where its layout says")
    except (ValueError, KeyError, TypeError):
        return parse_header(path, line), None
    header = {**before, **after}
    if sealed:
        header.pop("crc", None)
    _check_format(path, header)
    return header, memoryview(line)[start:end]


def read_header(path: str | Path) -> dict[str, Any]:
    """A journal's header alone (its first line), not its events."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            line = file.readline().rstrip(b"\n")
    except OSError as exc:
        raise unreadable(path, exc) from None
    if not line:
        raise JournalError(f"{path}: the journal is empty (the run never started)")
    return parse_header(path, line)


def parse_header(path: Path, line: bytes) -> dict[str, Any]:
    sealed = line.startswith(b'{"format":"' + JOURNAL_FORMAT.encode())
    if sealed and not seal_holds(line):
        raise JournalDamaged(
            f"{path}:1: the journal's header is damaged (it does not match its integrity "
            "check); the journal was changed on disk after it was written — restore it "
            "from a copy"
        )
    try:
        # a sealed record is its object with the seal as one more member, last: read as it is
        header = orjson.loads(line)
    except ValueError:
        raise JournalError(f"{path}:1: not a Rollgate journal (no header line)") from None
    if sealed and isinstance(header, dict):
        header.pop("crc", None)
    _check_format(path, header)
    return header


def _check_format(path: Path, header: Any) -> None:
    if not isinstance(header, dict) or header.get("format") not in FORMATS:
        raise JournalError(
            f"{path}:1: not a {JOURNAL_FORMAT} journal "
            f"(format {header.get('format') if isinstance(header, dict) else None!r})"
        )


class RecordReader:
    """Reads a journal's event lines in order, verifying each (format 2): its integrity check,
    and that it is the next event (seq one more than the last). The first line that fails
    stops the read with JournalDamaged naming it, after leaving the whole part of the journal
    before it in `<journal>.recovered` (unless a copy is there already)."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.run = str(header.get("run_id", "?"))
        self.sealed = header.get("format") == JOURNAL_FORMAT
        self.last_seq: int | None = None  # the seq of the last event read

    def events(self, lines: list[bytes], first: int) -> tuple[list[Event], int]:
        """Events of `lines` (split on newlines; the last item is what follows the last
        newline), numbered from line `first`; returns them and how many torn fragments (a
        crash mid-write) were skipped."""
        events: list[Event] = []
        append = events.append
        loads = orjson.loads
        torn_lines = 0
        last = len(lines) - 1
        for i, raw in enumerate(lines):
            if not raw:
                continue
            body = unsealed(raw) if self.sealed else raw
            if body is None:
                # A fragment: either the last line without its newline (a crash mid-write),
                # or a fragment a resumed run closed with a newline and then appended after.
                if i == last or is_fragment(raw):
                    torn_lines += 1
                    continue
                self.damaged(first + i, "it does not match its integrity check")
            try:
                event = event_from_dict(loads(body))
            except (ValueError, TypeError) as exc:
                if i == last or is_fragment(raw):
                    torn_lines += 1
                    continue
                if self.sealed:
                    self.damaged(first + i, f"it is sealed but malformed ({exc})")
                raise JournalError(
                    f"{self.path}:{first + i}: malformed event ({exc}); the journal was "
                    "edited or corrupted — restore it from a copy"
                ) from None
            if self.sealed:
                self.follows(event.seq, first + i)
            append(event)
        return events, torn_lines

    def follows(self, seq: int, number: int) -> None:
        """Event `seq` must come right after the last one read."""
        if self.last_seq is not None and seq != self.last_seq + 1:
            what = "missing" if seq > self.last_seq + 1 else "repeated"
            self.damaged(number, f"event {seq} follows event {self.last_seq}: records are {what}")
        self.last_seq = seq

    def damaged(self, number: int, why: str) -> NoReturn:
        """Stop at line `number`, leaving the journal's whole part before it beside it."""
        copy = self.path.with_name(self.path.name + ".recovered")
        kept = f"a copy is in {copy}"
        if not copy.exists():
            try:
                with open(self.path, "rb") as journal:
                    before = [journal.readline() for _ in range(number - 1)]
                fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.writelines(line for line in before if line.endswith(b"\n"))
                kept = f"the run's record before it is in {copy}"
            except OSError as exc:
                kept = f"no copy of the part before it could be made ({exc.strerror})"
        raise JournalDamaged(
            f"{self.path}:{number}: damaged record in run {self.run} ({why}): the journal "
            f"was changed on disk after it was written. Replay, report and resume stop here; "
            f"{kept} (rollgate replay {copy})"
        )


def parse_events(path: Path, lines: list[bytes], first: int) -> tuple[list[Event], int]:
    """Events of unsealed `lines` (a format-1 journal), for readers of old journals."""
    return RecordReader(path, {"format": UNSEALED_FORMAT}).events(lines, first)


def is_fragment(raw: bytes) -> bool:
    """A cut-short event line: it starts like one and never closes its object."""
    return raw.startswith(b'{"type":') and not raw.rstrip().endswith(b"}")


class JournalTail:
    """Follows a journal another process appends to, reading only what is new (verified as
    every read is, from the last event already read)."""

    def __init__(self, path: Path, offset: int, line: int, reader: RecordReader):
        self.path = path
        self.offset = offset  # bytes consumed (always at a line end)
        self.line = line  # lines consumed
        self.reader = reader

    def read_new(self) -> list[Event]:
        """Complete events appended since the last call; a partial last line waits."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError as exc:
            raise JournalError(
                f"{self.path}: the journal cannot be read any more ({exc.strerror}): it was "
                "deleted or moved while being watched"
            ) from None
        end = data.rfind(b"\n")
        if end < 0:
            return []
        lines = data[:end].split(b"\n")
        self.offset += end + 1
        events, _ = self.reader.events([*lines, b""], self.line + 1)
        self.line += len(lines)
        return events
