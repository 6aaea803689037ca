"""The run as a stream of small typed events, serialised one JSON object per line.

Every event has `seq` (1, 2, ... per run), `time` (wall clock, epoch seconds) and `mono`
(monotonic seconds, for durations). `type` names the class. The format is versioned by
JOURNAL_FORMAT in core/journal.py; readers ignore fields they do not know.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import orjson

EVENT_TYPES: dict[str, type[Event]] = {}
E = TypeVar("E", bound="Event")


@dataclass(frozen=True, kw_only=True)
class Event:
    seq: int = 0
    time: float = 0.0
    mono: float = 0.0
    type: ClassVar[str] = "event"
    # State changes are fsynced before the engine acts on them; output may be batched.
    durable: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = "".join(f"-{c.lower()}" if c.isupper() else c for c in cls.__name__).lstrip("-")
        cls.type = name
        EVENT_TYPES[name] = cls

    def to_dict(self) -> dict[str, Any]:
        # Fields hold only JSON values (str, numbers, None, tuples of str, dicts of str), so
        # the instance dict is the record; no recursive asdict() copy is needed.
        return {"type": self.type, **self.__dict__}

    def to_json(self) -> str:
        return self.to_json_bytes().decode()

    def to_json_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())


@dataclass(frozen=True)
class _Spec:
    names: frozenset[str]
    defaults: dict[str, Any]  # plain defaults
    factories: dict[str, Any]  # default factories
    required: frozenset[str]
    tuples: tuple[str, ...]


_SPECS: dict[type[Event], _Spec] = {}


def _spec_of(cls: type[Event]) -> _Spec:
    """What building `cls` from a record needs, computed once per class."""
    spec = _SPECS.get(cls)
    if spec is None:
        fs = fields(cls)
        spec = _SPECS[cls] = _Spec(
            names=frozenset(f.name for f in fs),
            defaults={f.name: f.default for f in fs if f.default is not MISSING},
            factories={f.name: f.default_factory for f in fs if f.default_factory is not MISSING},
            required=frozenset(
                f.name for f in fs if f.default is MISSING and f.default_factory is MISSING
            ),
            tuples=tuple(f.name for f in fs if f.type == "tuple[str, ...]"),
        )
    return spec


# event types of older journals, read as the type that replaced them (with these fields)
_LEGACY: dict[str, dict[str, Any]] = {
    "restarts-allowed": {"type": "cleanup-done", "what": "package restarts allowed again"},
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """An event from its JSON record (which it may consume); unknown fields are ignored,
    missing required ones refused.

    Built without running the dataclass __init__ (a journal holds millions of records); the
    result equals `cls(**fields)`.
    """
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    legacy = _LEGACY.get(data.get("type", ""))
    if legacy is not None:  # a journal written before the type was renamed
        data = {**data, **legacy}
    cls = EVENT_TYPES.get(data.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    spec = _spec_of(cls)
    del data["type"]
    if data.keys() != spec.names:  # fields missing (defaults) or unknown (a newer writer)
        missing = spec.required - data.keys()
        if missing:
            raise TypeError(f"{cls.type} event without {', '.join(sorted(missing))}")
        data = {k: v for k, v in data.items() if k in spec.names}
        for name, default in spec.defaults.items():
            data.setdefault(name, default)
        for name, factory in spec.factories.items():
            if name not in data:
                data[name] = factory()
    for name in spec.tuples:  # JSON has lists where the dataclass holds tuples
        if type(data[name]) is list:
            data[name] = tuple(data[name])
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", data)
    return event


def build(cls: type[E], values: dict[str, Any]) -> E:
    """`cls(**values)`, without the frozen dataclass's __init__ when `values` names every
    field (the engine builds 30,000 events a second: 0.8 µs each, against 1.3 µs); otherwise
    through it, which fills defaults and refuses unknown fields."""
    if values.keys() == _spec_of(cls).names:
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", values)
        return event
    return cls(**values)


def event_from_json(line: str | bytes) -> Event:
    return event_from_dict(orjson.loads(line))


# ---------------------------------------------------------------- the run


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """The engine started (or resumed) driving the run."""

    run_id: str
    operator: str
    plan_digest: str
    resumed: bool = False
    auto_approve: bool = False
    host: str = ""  # the machine the driving engine runs on


@dataclass(frozen=True, kw_only=True)
class RunPaused(Event):
    """Running steps finish; nothing new starts until resumed."""

    operator: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RunResumed(Event):
    """New work may start again."""

    operator: str


@dataclass(frozen=True, kw_only=True)
class RunAborted(Event):
    """An operator aborted: running commands are terminated, nothing new starts."""

    operator: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """The driver ended the run with one of the run words of core/words.py: complete,
    complete with deviations, failed, stopped (a gate was rejected), aborted, or paused (the
    driver left; resumable). `error`: the engine's own failure, one line, if it had one."""

    outcome: str
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class PhaseStarted(Event):
    """A phase (one tier at one site) started."""

    phase: str


@dataclass(frozen=True, kw_only=True)
class PhaseFinished(Event):
    """A phase ended: ok, failed or aborted."""

    phase: str
    outcome: str


@dataclass(frozen=True, kw_only=True)
class StageStarted(Event):
    """A stage of a phase (pre, a controller, the canary, a batch, post) started."""

    stage: str


@dataclass(frozen=True, kw_only=True)
class StageFinished(Event):
    stage: str
    outcome: str


# ---------------------------------------------------------------- gates


@dataclass(frozen=True, kw_only=True)
class GateOpened(Event):
    """The engine waits for a decision.

    kind: phase | canary | step (from the plan), warning (a status check exited 1),
    failure (a step failed, or a phase's failure budget is spent), interrupted (resume).
    options: the decisions it accepts, e.g. ("approve", "reject") or ("retry", "skip", "abort").
    """

    gate: str
    kind: str
    title: str
    summary: str = ""
    options: tuple[str, ...] = ("approve", "reject")
    step: str | None = None
    # what each option does, "OPTION: what happens", in the order of `options`
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GateDecided(Event):
    """Who decided what at a gate, with their comment (or the skip reason)."""

    gate: str
    decision: str
    operator: str
    comment: str = ""


# ---------------------------------------------------------------- steps and nodes


@dataclass(frozen=True, kw_only=True)
class StepStarted(Event):
    step: str
    node: str
    attempt: int
    command: str | None = None


@dataclass(frozen=True, kw_only=True)
class StepOutput(Event):
    """Output lines of a running step, batched (at most ~100 ms of output per event)."""

    durable: ClassVar[bool] = False
    step: str
    stream: str  # stdout | stderr | info
    lines: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class BackupTaken(Event):
    """A database backup, with what a restore needs: the file on the node and its sha256
    (or, where the method keeps it elsewhere, where), the release it was taken from and the
    databases it holds."""

    step: str
    node: str
    service: str
    file: str  # "" when the method keeps the backup elsewhere (`where` says)
    sha256: str
    source: str
    databases: tuple[str, ...] = ()
    where: str = ""


@dataclass(frozen=True, kw_only=True)
class BackupPulled(Event):
    """A backup file copied from a node into the run directory, its sha256 checked."""

    step: str
    node: str
    remote: str
    local: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class NotificationFailed(Event):
    """A notification (inventory `notify:`) could not be delivered; the run went on."""

    channel: str  # command | webhook
    about: str  # gate | failure | end
    error: str


@dataclass(frozen=True, kw_only=True)
class StatusPollFailed(Event):
    """A site's API did not answer the status poll (the node states shown may be old); said
    once until a poll of the site answers again."""

    site: str
    error: str


@dataclass(frozen=True, kw_only=True)
class CleanupDone(Event):
    """The run ended part-way (aborted, stopped, failed) and its deployment method had work
    undone on a node (core/methods `Cleanup`): `what` it achieves, done (`ok`) or not (`error`)."""

    node: str
    what: str
    ok: bool
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class StepFinished(Event):
    """outcome: ok | warning (acknowledged) | not needed | failed | timed_out | unreachable |
    skipped | interrupted."""

    step: str
    attempt: int
    outcome: str
    exit_status: int | None = None
    error: str = ""
    duration: float = 0.0


@dataclass(frozen=True, kw_only=True)
class NodeStatus(Event):
    """What is known about a node: reachability, versions installed and running, service
    states."""

    node: str
    reachable: bool | None = None
    version: str | None = None  # what its running program runs (read from the process)
    version_before: str | None = None  # as found before its packages moved
    installed: str | None = None  # what the install put on disk (not yet what runs)
    package: str | None = None  # the package these versions are of
    disabled: bool | None = None
    services: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ServiceDown(Event):
    """A service a finished phase moved stopped answering (the watch, core/engine/watch.py):
    its API, or a service record or agent the API lists."""

    site: str
    what: str  # "the image API" / "nova-compute on cmp3"
    detail: str  # what the probe got (503 Service Unavailable, down)
    phase: str  # the phase that moved it


@dataclass(frozen=True, kw_only=True)
class ServiceUp(Event):
    """A service the watch saw stop answers again."""

    site: str
    what: str


@dataclass(frozen=True, kw_only=True)
class OperatorNote(Event):
    """A free-text note an operator added to the record."""

    operator: str
    text: str


# ---------------------------------------------------------------- commands (sent, not emitted)


COMMAND_KINDS = (
    "approve",
    "reject",
    "retry",
    "skip",
    "abort",
    "rerun",
    "mark-done",
    "pause",
    "resume",
    "note",
    "quit",  # the driver leaves: the run stays paused, resumable (running steps finish)
)


@dataclass(frozen=True)
class Command:
    """What an operator asks of the engine; every accepted command becomes an event.

    Gate decisions (approve, reject, retry, skip, abort, rerun, mark-done) answer the open
    gate (`gate` may name it, to avoid answering a gate that has just changed); pause, resume,
    abort, note and quit (leave the run paused, resumable) act on the run at any time.
    `twins`: with approve, the gates of other sites that ask the same question
    (core/twins.py), each approved as it opens with the same operator and comment.
    """

    kind: str
    operator: str
    comment: str = ""
    gate: str | None = None
    twins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in COMMAND_KINDS:
            raise ValueError(f"unknown command {self.kind!r}; one of {', '.join(COMMAND_KINDS)}")
