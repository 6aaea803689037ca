"""Timeline checkpoints beside a journal, so a replay opens where you look.

`<journal>.timeline` holds, every `every` events, what changed since the previous checkpoint:
the steps and nodes the events touched (as of that event) and the run-level fields, the same
records the timeline keeps in memory (core/timeline.py). The engine appends one as the run
passes each mark and syncs it to disk; a replay loads them and folds at most `every` events
to reach any point.

Never required and never trusted blindly: each record is sealed with its own CRC-32 and names
the event it was taken after by its number and the CRC-32 of that event's record; a record
that does not match its seal or the journal (a journal from elsewhere, an edit, a crash
between the two files) ends what is used, and the replay folds from there as it would without
the file, writing the checkpoints again.
"""

from __future__ import annotations

import contextlib
import operator
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from rollgate.core import events as ev
from rollgate.core.journal import seal, unsealed
from rollgate.core.plan import Plan
from rollgate.core.state import (
    GateState,
    NodeState,
    Outage,
    RunState,
    StepState,
    copy_node,
    copy_run_fields,
    touched_by,
)

# what the reducer changes in a step (core/state.py); the rest comes from the plan
CHANGING = ("status", "attempts", "started", "finished", "duration", "exit_status", "error", "tail")
step_values = operator.itemgetter(*CHANGING)  # a step's __dict__ -> what changed, in order
assert set(CHANGING) <= {f.name for f in fields(StepState)}

FORMAT = "rollgate.timeline/3"  # 3: a step's state is the values of CHANGING, in order
EVERY = 10_000  # events between checkpoints: a seek folds at most this many


def timeline_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".timeline")


@dataclass
class Checkpoint:
    """The state as of position `position` (after that many events), as changes."""

    position: int
    line_crc: int  # CRC-32 of the journal line of the event at position - 1
    run: RunState  # run-level fields only (steps and nodes empty)
    # the steps changed since the previous checkpoint: the values of CHANGING, in order
    steps: dict[str, tuple[object, ...]]
    nodes: dict[str, NodeState]  # the nodes changed since the previous checkpoint


# ---------------------------------------------------------------- records


def _run_record(run: RunState) -> dict[str, Any]:
    gate_at = next((i for i, g in enumerate(run.gates) if g is run.gate), None)
    return {
        "status": run.status,
        "run_id": run.run_id,
        "operator": run.operator,
        "host": run.host,
        "started": run.started,
        "finished": run.finished,
        "last_seq": run.last_seq,
        "pauses": run.pauses,
        "torn": run.torn,
        "error": run.error,
        "phases": run.phases,
        "stages": run.stages,
        "gates": [g.__dict__ for g in run.gates],
        "gate_at": gate_at,
        "gate": run.gate.__dict__ if run.gate is not None and gate_at is None else None,
        "notes": run.notes,
        "outages": [o.__dict__ for o in run.outages],
        "step_status_counts": run.step_status_counts,
        "node_status_counts": run.node_status_counts,
        "phase_done": run.phase_done,
    }


def _gate(data: dict[str, Any]) -> GateState:
    return GateState(
        **{**data, "options": tuple(data["options"]), "choices": tuple(data["choices"])}
    )


def _run_from(plan: Plan, data: dict[str, Any]) -> RunState:
    run = RunState(plan=plan)
    for name in ("status", "run_id", "operator", "host", "started", "finished", "last_seq"):
        setattr(run, name, data[name])
    run.pauses, run.torn, run.error = data["pauses"], data["torn"], data["error"]
    run.phases, run.stages = data["phases"], data["stages"]
    run.gates = [_gate(g) for g in data["gates"]]
    if data["gate_at"] is not None:
        run.gate = run.gates[data["gate_at"]]
    elif data["gate"] is not None:
        run.gate = _gate(data["gate"])
    run.notes = [tuple(n) for n in data["notes"]]
    run.outages = [Outage(**o) for o in data["outages"]]
    run.step_status_counts = data["step_status_counts"]
    run.node_status_counts = data["node_status_counts"]
    run.phase_done = data["phase_done"]
    return run


def _node_from(data: dict[str, Any]) -> NodeState:
    node = object.__new__(NodeState)
    data["packages"] = {k: tuple(v) for k, v in data["packages"].items()}
    node.__dict__ = data
    return node


_STATUS, _ERROR, _TAIL = (CHANGING.index(name) for name in ("status", "error", "tail"))


def _step_from(values: list[Any], lines: dict[str, str]) -> tuple[object, ...]:
    """A step's changed values from their record; `lines`: the output lines read so far, one
    copy of each (a thousand computes print the same apt lines: 126 MB of a 10 x 1,000
    replay's checkpoints were their tails)."""
    if len(values) != len(CHANGING):
        raise ValueError("a step of another shape")
    values[_STATUS] = sys.intern(values[_STATUS])  # a few words, a hundred thousand times
    if not values[_ERROR]:
        values[_ERROR] = ""
    values[_TAIL] = tuple([lines.setdefault(line, line) for line in values[_TAIL]])
    return tuple(values)


def encode(checkpoint: Checkpoint) -> bytes:
    """The checkpoint's line: its JSON object sealed with its own CRC-32, as a journal line."""
    return seal(_record(checkpoint))


def _record(checkpoint: Checkpoint) -> bytes:
    return orjson.dumps(
        {
            "position": checkpoint.position,
            "line_crc": checkpoint.line_crc,
            "run": _run_record(checkpoint.run),
            "steps": checkpoint.steps,
            "nodes": {k: v.__dict__ for k, v in checkpoint.nodes.items()},
        }
    )


def decode(plan: Plan, line: bytes, lines: dict[str, str] | None = None) -> Checkpoint:
    """A checkpoint from its line; ValueError when the line does not match its seal. `lines`:
    output lines read before (from earlier checkpoints of the file), shared with them."""
    body = unsealed(line.rstrip(b"\n"))
    if body is None:
        raise ValueError("the checkpoint does not match its integrity check")
    data = orjson.loads(body)
    seen: dict[str, str] = {} if lines is None else lines
    return Checkpoint(
        data["position"],
        data["line_crc"],
        _run_from(plan, data["run"]),
        {k: _step_from(v, seen) for k, v in data["steps"].items()},
        {k: _node_from(v) for k, v in data["nodes"].items()},
    )


def take(
    state: RunState, position: int, line_crc: int, steps: set[str], nodes: set[str]
) -> Checkpoint:
    """A checkpoint of `state` at `position`: the run-level fields and copies of `steps` and
    `nodes` (those changed since the previous one)."""
    run = RunState(plan=state.plan)
    copy_run_fields(state, run)
    return Checkpoint(
        position,
        line_crc,
        run,
        {sid: step_values(state.steps[sid].__dict__) for sid in steps},
        {name: copy_node(state.nodes[name]) for name in nodes},
    )


# ---------------------------------------------------------------- the engine's marks


class Marks:
    """What the engine folds, watched for checkpoints: every `every` events one goes to the
    file, with the steps and nodes touched since the previous one."""

    def __init__(self, file: CheckpointFile):
        self.file = file
        self.position = 0
        self._steps: set[str] = set()
        self._nodes: set[str] = set()

    def before(self, state: RunState, event: ev.Event) -> None:
        """Called before `event` is applied to `state`."""
        if type(event) is ev.StepOutput:  # most events: its step, nothing of the node
            self._steps.add(event.step)
            return
        steps, nodes = touched_by(state, event)
        self._steps.update(steps)
        self._nodes.update(nodes)

    def after(self, state: RunState, body: bytes) -> None:
        """Called once it is applied; `body`: its JSON record as the journal holds it."""
        self.position += 1
        if self.position % self.file.every == 0:
            self.file.append(take(state, self.position, zlib.crc32(body), self._steps, self._nodes))
            self._steps, self._nodes = set(), set()


# ---------------------------------------------------------------- the file


def _header(identity: dict[str, Any], every: int) -> bytes:
    return orjson.dumps({"format": FORMAT, **identity, "every": every})


def identity_of(header: dict[str, Any]) -> dict[str, Any]:
    """What ties a checkpoint file to its journal: the run and its plan."""
    return {"run_id": header.get("run_id"), "plan_digest": header.get("plan_digest")}


class CheckpointFile:
    """Appends checkpoints to `<journal>.timeline` (0600), each synced to disk. Writing is
    best effort: a file that cannot be written is given up on, the run or replay goes on."""

    def __init__(self, path: Path, identity: dict[str, Any], every: int, *, keep: int = 0):
        """`keep`: how many valid records of an existing file to keep (the rest is rewritten).
        Nothing is written before the first checkpoint: a run shorter than `every` events
        leaves no file (and a stale one stays until then: it is checked before it is used)."""
        self.path = path
        self.every = every
        self._identity = identity
        self._keep = keep
        self._fd: int | None = None
        self._gave_up = False

    def _open(self) -> None:
        try:
            if self._keep:
                self._fd = os.open(self.path, os.O_WRONLY)
                os.ftruncate(self._fd, _offset_after(self.path, self._keep + 1))
                os.lseek(self._fd, 0, os.SEEK_END)
            else:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.write(self._fd, _header(self._identity, self.every) + b"\n")
        except OSError:
            self.close()

    def append(self, checkpoint: Checkpoint) -> None:
        if self._fd is None and not self._gave_up:
            self._open()
        if self._fd is None:
            return
        try:
            os.write(self._fd, encode(checkpoint) + b"\n")
            os.fsync(self._fd)
        except OSError:
            self.close()

    def close(self) -> None:
        self._gave_up = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _offset_after(path: Path, lines: int) -> int:
    offset = 0
    with open(path, "rb") as f:
        for _ in range(lines):
            line = f.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
    return offset


def load(
    path: Path,
    plan: Plan,
    identity: dict[str, Any],
    line_crc: Callable[[int], int | None],
    events: int,
) -> tuple[int, list[Checkpoint]]:
    """The checkpoints of `path` that match the journal, in order: (every, checkpoints).
    `line_crc(i)`: the CRC-32 of the journal line of event i (None past its end). Nothing
    (every 0) for a missing file, another run's, or one of another format."""
    try:
        lines = _lines(path)
        header = orjson.loads(next(lines))
    except (OSError, StopIteration, ValueError):
        return 0, []
    every = header.get("every")
    if (
        not isinstance(header, dict)
        or header.get("format") != FORMAT
        or identity_of(header) != identity
        or not isinstance(every, int)
        or every <= 0
    ):
        return 0, []
    found: list[Checkpoint] = []
    seen: dict[str, str] = {}  # output lines, one copy across the file's checkpoints
    for line in lines:
        position = (len(found) + 1) * every
        if position > events:
            break
        try:
            checkpoint = decode(plan, line, seen)
        except (ValueError, KeyError, TypeError, AttributeError):
            break  # cut short by a crash, or edited: what follows is not used
        if checkpoint.position != position or line_crc(position - 1) != checkpoint.line_crc:
            break
        found.append(checkpoint)
    return every, found


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return  # torn: written while the process died
            yield line


def body_crc(body: bytes) -> int:
    """The CRC-32 of an event's JSON object, as a sealed journal line carries it."""
    return zlib.crc32(body)
