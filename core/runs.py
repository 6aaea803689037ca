"""Where runs live (platformdirs state dir, runs/<run-id>/), the driver lock, and the listing."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollgate.core.errors import UserError


def make_dirs(path: Path) -> Path:
    """Make `path` and every missing directory above it, each 0700, whatever the umask (for a
    place the user chose, such as --journal's directory, which may be shared)."""
    for missing in reversed([path, *path.parents]):
        if not missing.exists():
            with contextlib.suppress(FileExistsError):
                missing.mkdir(mode=0o700)
                missing.chmod(0o700)
    return path


def private_dir(
    path: Path,
    what: str = "the state directory",
    fix: str = "set ROLLGATE_STATE_DIR to a directory you can write to",
) -> Path:
    """Make `path` and every missing directory above it, each 0700, whatever the umask. A
    `path` that exists already must be a directory of this user's that nobody else may write
    to (as ssh-agent and tmux ask of theirs): anything else is refused, never used."""
    try:
        make_dirs(path)
        found = os.lstat(path)
    except OSError as exc:
        raise UserError(
            f"cannot use {what} {exc.filename or path}: {exc.strerror}; {fix}"
        ) from None
    if not stat.S_ISDIR(found.st_mode):
        raise UserError(f"{path} is not a directory; Rollgate keeps its files in one")
    if found.st_uid != os.geteuid() or found.st_mode & 0o022:
        owner = "you" if found.st_uid == os.geteuid() else f"uid {found.st_uid}"
        raise UserError(
            f"{path} belongs to {owner} with mode {stat.S_IMODE(found.st_mode):04o}: Rollgate "
            f"uses only a directory of its own user that nobody else can write to; remove it, "
            f"or {fix}"
        )
    return path


def write_private(path: Path, text: str | bytes) -> None:
    """Write a file only its owner can read (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as out:
        out.write(text)


def unreachable_by_group(path: Path, gid: int) -> Path | None:
    """The first directory on the way to `path` (itself included, where it exists) that a
    member of group `gid` may not pass through, or None."""
    for place in [*reversed(path.parents), path]:
        try:
            found = os.stat(place)
        except FileNotFoundError:
            return None  # made later, by Rollgate, with what the group needs
        mode = found.st_mode
        if not (mode & stat.S_IXOTH or (found.st_gid == gid and mode & stat.S_IXGRP)):
            return place
    return None


def share_with_group(run_dir: Path, group: str) -> None:
    """Let the members of `group` reach a run's control socket: the run's directory becomes
    theirs to pass through (0710, group `group`), and the state directory and its runs/
    passable by anyone (0711: their contents cannot be listed). Nothing can be read: the
    journal and every other file stay 0600. Refused, saying where, when a directory above it
    keeps the group out."""
    import grp

    gid = grp.getgrnam(group).gr_gid
    for place in (run_dir.parent.parent, run_dir.parent):
        if os.stat(place).st_uid == os.geteuid():
            place.chmod(stat.S_IMODE(os.stat(place).st_mode) | 0o011)
    os.chown(run_dir, -1, gid)
    run_dir.chmod(0o710)
    blocked = unreachable_by_group(run_dir, gid)
    if blocked is not None:
        raise UserError(
            f"--control-group {group}: its members cannot pass through {blocked} (mode "
            f"{stat.S_IMODE(os.stat(blocked).st_mode):04o}); set ROLLGATE_STATE_DIR to a "
            "place they can reach (every directory above it passable by them)"
        )


def state_home() -> Path:
    from platformdirs import user_state_dir

    return Path(os.environ.get("ROLLGATE_STATE_DIR") or user_state_dir("rollgate"))


def runs_dir() -> Path:
    return private_dir(state_home() / "runs")


def new_run_id(cloud: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now or time.time()))
    base = f"{stamp}-{cloud}"
    run_id, n = base, 1
    while (runs_dir() / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def resolve_journal(ref: str) -> Path:
    """A run id (from `rollgate runs`) or a path to a journal file or run directory."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    for run_dir in (path, runs_dir() / ref):
        if (run_dir / "journal.jsonl").is_file():
            return run_dir / "journal.jsonl"
        if (run_dir / "journal.path").is_file():  # the run was started with --journal PATH
            return Path((run_dir / "journal.path").read_text().strip())
    raise UserError(
        f"no run or journal {ref!r}; list runs with `rollgate runs` or give the "
        "path of a journal.jsonl"
    )


def recovered_copy(ref: str) -> Path | None:
    """The `.recovered` copy beside a run's journal (the engine writes it when its journal
    was deleted or cut short; a reader, up to a damaged record), if there is one."""
    path = Path(ref).expanduser()
    journal = path if path.suffix == ".jsonl" else path / "journal.jsonl"
    if not path.exists() and path.suffix != ".jsonl":
        journal = runs_dir() / ref / "journal.jsonl"
        pointer = runs_dir() / ref / "journal.path"
        if pointer.is_file():
            journal = Path(pointer.read_text().strip())
    copy = journal.with_name(journal.name + ".recovered")
    return copy if copy.is_file() else None


class RunLock:
    """An exclusive lock held while a run is driven (flock, released by the OS on a crash)."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UserError(
                f"cannot use the state directory {state_home()}: {exc.strerror}; set "
                "ROLLGATE_STATE_DIR to a writable directory"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(f"{self.what} is already being driven: {held_by(holder)}") from None
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd

    def describe(self, run_id: str) -> None:
        """Name the run this lock is held for (what a refused second driver is told)."""
        if self._fd is None:
            return
        info = {**_read_holder(self._fd), "run_id": run_id}
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, json.dumps(info).encode())
        os.fsync(self._fd)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def held_by(holder: dict[str, Any]) -> str:
    """Who holds a cloud's lock, and the command that reaches it: a detached engine (its run
    has a control socket) is attached to; a console in the foreground is watched or stopped."""
    run = str(holder.get("run_id") or "")
    where = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
             f"{holder.get('started', '?')}")  # fmt: skip
    if not run:
        return f"{where}; `rollgate runs` lists its run"
    if (runs_dir() / run / "control.sock").exists():  # core/detach.py control_socket
        return (f"run {run}, a detached engine ({where}); attach to it: `rollgate attach "
                f"{run}`")  # fmt: skip
    return (f"run {run}, driven by a console in the foreground ({where}); watch it: "
            f"`rollgate watch {run}`, or quit that console first")  # fmt: skip


def cloud_holder(cloud: str) -> dict[str, Any]:
    """What the cloud's lock file says of the driver that holds it ({} if none is known)."""
    try:
        fd = os.open(cloud_lock(cloud).path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}


def cloud_lock(cloud: str) -> RunLock:
    """Two consoles may not drive upgrades of the same cloud at once."""
    return RunLock(state_home() / "locks" / f"{cloud}.lock", f"cloud {cloud!r}")


if TYPE_CHECKING:
    from rollgate.core.journal_index import JournalIndex


@dataclass
class RunSummary:
    run_id: str
    cloud: str
    source: str
    target: str
    started: str
    state: str
    path: Path


def list_runs() -> list[RunSummary]:
    from rollgate.core.journal import JournalError
    from rollgate.core.journal_index import JournalIndex

    out = []
    for run in sorted(runs_dir().iterdir()):
        journal = run / "journal.jsonl"
        if not journal.is_file() and (run / "journal.path").is_file():  # --journal PATH
            journal = Path((run / "journal.path").read_text().strip())
        if not journal.is_file():
            continue
        try:
            index = JournalIndex.open(journal)  # lines split, events parsed only when read
            state = _run_state(index)
        except JournalError:
            out.append(RunSummary(run.name, "?", "?", "?", "?", "unreadable", journal))
            continue
        header = index.header
        out.append(
            RunSummary(
                run.name,
                header.get("cloud", "?"),
                header.get("from", "?"),
                header.get("to", "?"),
                header.get("created", "?"),
                f"dry-run, {state}" if header.get("dry_run") else state,
                journal,
            )
        )
    return out


def _run_state(index: JournalIndex) -> str:
    """How the run stands, from its last run-started or run-finished event (read backwards),
    and for one without an end, whether a driver still holds its cloud's lock."""
    ended = _last_outcome(index)
    if ended is not None:
        return ended
    return "running" if driver_alive(str(index.header.get("cloud", ""))) else NO_DRIVER


def _last_outcome(index: JournalIndex) -> str | None:
    """The outcome of the journal's last run-finished, if no run-started follows it (read
    backwards: a resumed run's earlier end does not count)."""
    for i in range(len(index) - 1, -1, -1):
        kind = index.kind(i)
        if kind == "run-finished":
            return str(index.event(i).outcome)  # type: ignore[attr-defined]
        if kind == "run-started":
            return None
    return None


NO_DRIVER = "engine lost (stopped without finishing; resume it)"


def ended_outcome(run: str) -> str | None:
    """The outcome of a run that has ended (complete, failed, aborted, paused...), or None
    while it has not (or its journal cannot say)."""
    from rollgate.core.journal import JournalError
    from rollgate.core.journal_index import JournalIndex

    try:
        index = JournalIndex.open(resolve_journal(run))
    except (JournalError, UserError, OSError):
        return None
    return _last_outcome(index)


def driver_alive(cloud: str) -> bool:
    """Whether a process holds the cloud's run lock (a driver runs it now)."""
    lock = cloud_lock(cloud).path
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the lock if we took it
    return False


def resume_command(header: dict[str, Any], journal: Path | None = None) -> str:
    """The command that resumes the run whose journal header is `header`, with its own
    inventory path (a rollback: `rollgate rollback`, with the run it undoes and its site)."""
    import shlex

    run = str(header.get("run_id", ""))
    ref = run or (str(journal) if journal else "RUN")
    inventory = str(header.get("inventory") or "")
    back = header.get("rollback") or {}
    if back:
        phase = f" --phase {shlex.quote(str(back['phase']))}" if back.get("phase") else ""
        return (
            f"rollgate rollback {shlex.quote(str(back.get('run')))} --site "
            f"{shlex.quote(str(back.get('site')))}{phase} --resume {shlex.quote(ref)}"
        )
    where = shlex.quote(inventory) if inventory else "INVENTORY"
    return f"rollgate run {where} --resume {shlex.quote(ref)}"


def resume_command_of(run: str) -> str:
    """resume_command() of a run named by id or journal path (INVENTORY when unreadable)."""
    from rollgate.core.journal import JournalError, read_header

    try:
        return resume_command(read_header(resolve_journal(run)))
    except (JournalError, UserError, OSError):
        return f"rollgate run INVENTORY --resume {run}"
