"""RunState, folded from events by one reducer: the live view, replay, resume and reports.

`apply(state, event)` is the reducer. It updates `state` in place and returns it, because
folding a million-event journal by copying the state per event would be far too slow; it
depends only on the state and the event (no clock, no I/O), so folding the same events always
gives the same state. `reduce(state, event)` is the pure form (it copies first) for callers
that must keep the old state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollgate.core import events as ev
from rollgate.core.plan import Plan
from rollgate.core.words import STEP_DEVIATION, STEP_FAILED, STEP_SETTLED

OUTPUT_TAIL = 20  # lines kept per step; the journal has everything

FINISHED_OK = STEP_SETTLED  # steps the run may go past (ok, warning, skipped)
FAILED = STEP_FAILED


@dataclass
class StepState:
    id: str
    node: str
    site: str
    phase: str
    stage: str
    status: str = "pending"  # pending | running | ok | warning | failed | timed_out |
    #                           unreachable | skipped | interrupted
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    duration: float = 0.0
    exit_status: int | None = None
    error: str = ""
    tail: tuple[str, ...] = ()  # the last OUTPUT_TAIL lines; immutable, so copies share it
    api: bool = False  # an OpenStack API call: when it cannot connect, the API is unreachable
    site_check: bool = False  # a check of the whole site: what it finds is not its node's

    @property
    def done(self) -> bool:
        return self.status in FINISHED_OK


@dataclass
class NodeState:
    name: str
    site: str
    status: str = "pending"  # core/words.py WORDS["node"]
    steps_total: int = 0
    steps_done: int = 0  # settled: ok, warning or skipped
    running: int = 0
    failed: int = 0
    skipped: int = 0
    version: str | None = None  # what its program runs, as read from the running process
    # package -> (version before the run moved it, version its running process runs), as its
    # checks read them; a stale process shows the probe's word ("stale", "not-running")
    packages: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    installed: dict[str, str] = field(default_factory=dict)  # package -> version on disk
    deviations: int = 0  # checks of the final verification that found it not at the target
    # what a method's clean-up at the end of a stopped run did on the node (what -> done),
    # since the node's last step started
    cleaned: dict[str, bool] = field(default_factory=dict)
    reachable: bool | None = None
    disabled: bool | None = None
    services: dict[str, str] = field(default_factory=dict)


@dataclass
class GateState:
    id: str
    kind: str
    title: str
    summary: str
    options: tuple[str, ...]
    step: str | None
    opened: float
    decision: str | None = None
    operator: str | None = None
    comment: str = ""
    decided: float | None = None
    choices: tuple[str, ...] = ()  # what each option does


@dataclass
class Outage:
    """A service a finished phase moved that stopped answering, as the watch saw it."""

    site: str
    what: str
    detail: str
    phase: str
    since: float
    until: float | None = None  # None: not seen answering again (yet)


@dataclass
class RunState:
    plan: Plan
    status: str = "pending"  # pending | running | paused | complete | failed | stopped | aborted
    run_id: str = ""
    operator: str = ""
    host: str = ""  # where the driving engine runs
    started: float | None = None
    finished: float | None = None
    last_seq: int = 0
    steps: dict[str, StepState] = field(default_factory=dict)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)
    gate: GateState | None = None
    gates: list[GateState] = field(default_factory=list)
    notes: list[tuple[float, str, str]] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)  # the watch's, in the order seen
    pauses: int = 0
    torn: bool = False  # set by readers when the journal ended mid-line
    error: str = ""  # the engine's own failure, from RunFinished
    # steps by status, kept by the reducer so summaries need not scan every step
    step_status_counts: dict[str, int] = field(default_factory=dict)
    node_status_counts: dict[str, int] = field(default_factory=dict)  # nodes by status
    phase_done: dict[str, int] = field(default_factory=dict)  # finished-ok steps per phase

    @classmethod
    def initial(cls, plan: Plan) -> RunState:
        state = cls(plan=plan)
        for phase in plan.phases:
            state.phases[phase.id] = "pending"
            for stage in phase.stages:
                state.stages[stage.id] = "pending"
                for step in stage.steps:
                    state.steps[step.id] = StepState(
                        step.id,
                        step.node,
                        step.site,
                        phase.id,
                        stage.id,
                        api=step.executor == "cloud",
                        site_check=bool(step.args.get("site_check")),
                    )
                    node = state.nodes.setdefault(step.node, NodeState(step.node, step.site))
                    node.steps_total += 1
        state.step_status_counts = {"pending": len(state.steps)} if state.steps else {}
        for node in state.nodes.values():
            state.node_status_counts[node.status] = state.node_status_counts.get(node.status, 0) + 1
        state.phase_done = dict.fromkeys(state.phases, 0)
        return state

    # ---------------------------------------------------------------- derived views

    def counts(self, site: str | None = None) -> dict[str, int]:
        """Node counts by status, for one site or all."""
        if site is None:  # kept by the reducer: the console asks every frame
            return {k: v for k, v in self.node_status_counts.items() if v}
        out: dict[str, int] = {}
        for node in self.nodes.values():
            if site is None or node.site == site:
                out[node.status] = out.get(node.status, 0) + 1
        return out

    def step_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.step_status_counts.items() if v}

    @property
    def settled_count(self) -> int:
        """Steps the run may go past (ok, warning, skipped), from the running counts."""
        return sum(self.step_status_counts.get(k, 0) for k in FINISHED_OK)

    @property
    def failed_count(self) -> int:
        return sum(self.step_status_counts.get(k, 0) for k in FAILED)

    @property
    def current_phases(self) -> list[str]:
        return [p for p, s in self.phases.items() if s == "running"]

    @property
    def running_steps(self) -> list[StepState]:
        return [s for s in self.steps.values() if s.status == "running"]

    @property
    def failures_now(self) -> int:
        """Steps that ended failed in a driver's own attempt (not those interrupted by a
        driver that stopped, which the next driver asks about)."""
        counts = self.step_status_counts
        return sum(counts.get(k, 0) for k in FAILED if k != "interrupted")

    @property
    def failed_steps(self) -> list[StepState]:
        return [s for s in self.steps.values() if s.status in FAILED] if self.failed_count else []

    def approved(self, gate_id: str) -> bool:
        return any(g.id == gate_id and g.decision == "approve" for g in self.gates)


def _node_status(node: NodeState) -> str:
    """The node's word (core/words.py): `working` only while a step of it runs, `done` only
    when every step of it finished ok."""
    if node.running:
        return "working"
    if node.failed or node.skipped:
        if node.reachable is False:
            return "unreachable"
        return "failed" if node.failed else "skipped"
    if node.deviations:
        return "deviates"
    if node.steps_total and node.steps_done >= node.steps_total:
        return "done"
    if node.steps_done:
        return "partial"
    return "pending"


def apply(state: RunState, event: ev.Event) -> RunState:
    """Fold one event into `state` in place (see the module docstring) and return it."""
    state.last_seq = max(state.last_seq, event.seq)
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(state, event)
    return state


def reduce(state: RunState, event: ev.Event) -> RunState:
    """The pure reducer: a new state with `event` folded in; `state` is left unchanged."""
    return apply(copy_state(state), event)


def fold(plan: Plan, events: Any) -> RunState:
    state = RunState.initial(plan)
    for event in events:
        apply(state, event)
    return state


# ---------------------------------------------------------------- handlers


def _run_started(s: RunState, e: ev.RunStarted) -> None:
    s.status = "running"
    s.run_id, s.operator, s.host = e.run_id, e.operator, e.host
    if s.started is None:
        s.started = e.time
    s.finished = None
    s.error = ""
    s.gate = None  # a gate left open by a driver that died is asked again by the new one
    for step in s.steps.values():  # in flight when the previous driver died
        if step.status == "running":
            _finish_step(s, step, "interrupted", e.time, None, "the run stopped while it ran")


def _cleanup_done(s: RunState, e: ev.CleanupDone) -> None:
    if e.node in s.nodes:
        s.nodes[e.node].cleaned[e.what] = e.ok


def _run_paused(s: RunState, e: ev.RunPaused) -> None:
    if s.status == "running":
        s.status = "paused"
    s.pauses += 1


def _run_resumed(s: RunState, e: ev.RunResumed) -> None:
    if s.status == "paused":
        s.status = "running"


def _run_aborted(s: RunState, e: ev.RunAborted) -> None:
    s.status = "aborted"


def _run_finished(s: RunState, e: ev.RunFinished) -> None:
    s.status = e.outcome
    s.error = e.error
    s.finished = e.time
    s.gate = None


def _phase_started(s: RunState, e: ev.PhaseStarted) -> None:
    s.phases[e.phase] = "running"


def _phase_finished(s: RunState, e: ev.PhaseFinished) -> None:
    s.phases[e.phase] = e.outcome


def _stage_started(s: RunState, e: ev.StageStarted) -> None:
    s.stages[e.stage] = "running"


def _stage_finished(s: RunState, e: ev.StageFinished) -> None:
    s.stages[e.stage] = e.outcome


def _gate_opened(s: RunState, e: ev.GateOpened) -> None:
    gate = GateState(
        e.gate, e.kind, e.title, e.summary, tuple(e.options), e.step, e.time, choices=e.choices
    )
    s.gate = gate
    s.gates.append(gate)


def _gate_decided(s: RunState, e: ev.GateDecided) -> None:
    for gate in reversed(s.gates):
        if gate.id == e.gate and gate.decision is None:
            gate.decision, gate.operator, gate.comment, gate.decided = (
                e.decision,
                e.operator,
                e.comment,
                e.time,
            )
            break
    if s.gate is not None and s.gate.id == e.gate:
        s.gate = None


def _set_status(s: RunState, step: StepState, status: str) -> None:
    counts = s.step_status_counts
    counts[step.status] -= 1
    counts[status] = counts.get(status, 0) + 1
    done = (status in FINISHED_OK) - (step.status in FINISHED_OK)
    if done:
        s.phase_done[step.phase] = s.phase_done.get(step.phase, 0) + done
    step.status = status


def _leave_status(node: NodeState, status: str, site_check: bool) -> None:
    """Take a step's old status out of its node's counts."""
    if status == "running":
        node.running -= 1
    elif status in FINISHED_OK:
        node.steps_done -= 1
        if status == "skipped":
            node.skipped -= 1
        elif status == STEP_DEVIATION and not site_check:
            node.deviations -= 1
    elif status in FAILED:
        node.failed -= 1


def _update_node_status(s: RunState, node: NodeState) -> None:
    """Derive the node's status again, keeping the counts by status."""
    status = _node_status(node)
    if status != node.status:
        counts = s.node_status_counts
        counts[node.status] -= 1
        counts[status] = counts.get(status, 0) + 1
        node.status = status


def _step_started(s: RunState, e: ev.StepStarted) -> None:
    step = s.steps.get(e.step)
    if step is None:
        return
    node = s.nodes[step.node]
    _leave_status(node, step.status, step.site_check)
    node.running += 1
    if node.cleaned:  # new work on the node: its method says again what is left to undo
        node.cleaned = {}
    _set_status(s, step, "running")
    step.attempts = max(step.attempts, e.attempt)
    step.started = e.time
    step.finished = None
    step.exit_status = None
    step.error = ""
    _update_node_status(s, node)


def _finish_step(
    s: RunState,
    step: StepState,
    outcome: str,
    time: float,
    exit_status: int | None,
    error: str,
    duration: float = 0.0,
) -> None:
    node = s.nodes[step.node]
    _leave_status(node, step.status, step.site_check)
    _set_status(s, step, outcome)
    step.finished = time
    step.exit_status = exit_status
    step.error = error
    step.duration = duration
    if outcome in FINISHED_OK:
        node.steps_done += 1
        if outcome == "skipped":
            node.skipped += 1
        elif outcome == STEP_DEVIATION and not step.site_check:  # the site's, not its node's
            node.deviations += 1
    else:
        node.failed += 1
    if outcome == "unreachable" and not step.api:  # the node, not its API, did not answer
        node.reachable = False
    _update_node_status(s, node)


def _step_finished(s: RunState, e: ev.StepFinished) -> None:
    step = s.steps.get(e.step)
    if step is None:
        return
    step.attempts = max(step.attempts, e.attempt)
    _finish_step(s, step, e.outcome, e.time, e.exit_status, e.error, e.duration)
    if e.error:
        step.tail = (*step.tail, e.error)[-OUTPUT_TAIL:]


def _step_output(s: RunState, e: ev.StepOutput) -> None:
    step = s.steps.get(e.step)
    if step is not None:
        lines = e.lines if type(e.lines) is tuple else tuple(e.lines)
        tail = step.tail + lines
        step.tail = tail[-OUTPUT_TAIL:] if len(tail) > OUTPUT_TAIL else tail


def _node_status_event(s: RunState, e: ev.NodeStatus) -> None:
    node = s.nodes.get(e.node)
    if node is None:
        return
    if e.reachable is not None:
        node.reachable = e.reachable
    if e.version is not None:
        node.version = e.version
    if e.package is not None and (e.version is not None or e.version_before is not None):
        before, after = node.packages.get(e.package, (None, None))
        node.packages = {  # a new dict: snapshots of the state share the old one
            **node.packages,
            e.package: (e.version_before or before, e.version or after),
        }
    if e.package is not None and e.installed is not None:
        node.installed = {**node.installed, e.package: e.installed}
    if e.disabled is not None:
        node.disabled = e.disabled
    node.services.update(e.services)
    _update_node_status(s, node)


def _note(s: RunState, e: ev.OperatorNote) -> None:
    s.notes.append((e.time, e.operator, e.text))


def _service_down(s: RunState, e: ev.ServiceDown) -> None:
    s.outages.append(Outage(e.site, e.what, e.detail, e.phase, e.time))


def _service_up(s: RunState, e: ev.ServiceUp) -> None:
    for outage in reversed(s.outages):
        if outage.site == e.site and outage.what == e.what and outage.until is None:
            outage.until = e.time
            break


_HANDLERS: dict[type[ev.Event], Any] = {
    ev.ServiceDown: _service_down,
    ev.ServiceUp: _service_up,
    ev.RunStarted: _run_started,
    ev.RunPaused: _run_paused,
    ev.RunResumed: _run_resumed,
    ev.RunAborted: _run_aborted,
    ev.RunFinished: _run_finished,
    ev.PhaseStarted: _phase_started,
    ev.PhaseFinished: _phase_finished,
    ev.StageStarted: _stage_started,
    ev.StageFinished: _stage_finished,
    ev.GateOpened: _gate_opened,
    ev.GateDecided: _gate_decided,
    ev.StepStarted: _step_started,
    ev.StepOutput: _step_output,
    ev.StepFinished: _step_finished,
    ev.NodeStatus: _node_status_event,
    ev.CleanupDone: _cleanup_done,
    ev.OperatorNote: _note,
}


# ---------------------------------------------------------------- what an event touches


def touched_by(state: RunState, event: ev.Event) -> tuple[list[str], list[str]]:
    """The steps and nodes `apply(state, event)` may change, asked before applying it.

    Everything else it may change is run-level (status, phases, stages, gates, notes, counts).
    Timelines use this to keep checkpoints as the changes since the previous one.
    """
    kind = type(event)
    if kind is ev.StepOutput:  # its step's output tail, nothing of the node
        return [event.step], []  # type: ignore[attr-defined]
    if kind is ev.StepStarted or kind is ev.StepFinished:
        step = state.steps.get(event.step)  # type: ignore[attr-defined]
        return ([step.id], [step.node]) if step is not None else ([], [])
    if kind is ev.NodeStatus or kind is ev.CleanupDone:
        return [], [event.node]  # type: ignore[attr-defined]
    if kind is ev.RunStarted:  # marks steps left running by a driver that died
        running = [s for s in state.steps.values() if s.status == "running"]
        return [s.id for s in running], [s.node for s in running]
    return [], []


def copy_step(step: StepState) -> StepState:
    new = object.__new__(StepState)
    new.__dict__ = step.__dict__.copy()  # the tail is a tuple: shared, never changed in place
    return new


def copy_node(node: NodeState) -> NodeState:
    new = object.__new__(NodeState)
    fields_ = node.__dict__.copy()
    fields_["services"] = dict(node.services)
    fields_["cleaned"] = dict(node.cleaned)
    new.__dict__ = fields_
    return new


def copy_run_fields(source: RunState, target: RunState) -> None:
    """Copy everything but steps and nodes from `source` into `target` (no sharing)."""
    gates = [GateState(**g.__dict__) for g in source.gates]
    current = None
    if source.gate is not None:
        at = next((i for i, g in enumerate(source.gates) if g is source.gate), None)
        current = gates[at] if at is not None else GateState(**source.gate.__dict__)
    target.status, target.run_id, target.operator = source.status, source.run_id, source.operator
    target.host = source.host
    target.started, target.finished = source.started, source.finished
    target.last_seq, target.pauses, target.torn = source.last_seq, source.pauses, source.torn
    target.error = source.error
    target.phases = dict(source.phases)
    target.stages = dict(source.stages)
    target.gates, target.gate = gates, current
    target.notes = list(source.notes)
    target.outages = [Outage(**o.__dict__) for o in source.outages]
    target.step_status_counts = dict(source.step_status_counts)
    target.node_status_counts = dict(source.node_status_counts)
    target.phase_done = dict(source.phase_done)


def copy_state(state: RunState) -> RunState:
    """An independent copy sharing only the (immutable) plan; far cheaper than deepcopy."""
    new = RunState(plan=state.plan)
    copy_run_fields(state, new)
    new.steps = {k: copy_step(v) for k, v in state.steps.items()}
    new.nodes = {k: copy_node(v) for k, v in state.nodes.items()}
    return new
