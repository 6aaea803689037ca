"""The engine: executes a plan through an executor, emits events, obeys operator commands.

It is the only thing that changes the world. It never draws and never waits on a UI: it emits
events (journalled before it acts on them) and accepts commands (`send`). Concurrency follows
the plan: waves (tiers) in order; the phases of a wave site by site, up to site_concurrency at
once; stages in order; inside a stage, each node's steps in order and nodes in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from rollgate.core import events as ev
from rollgate.core import methods
from rollgate.core.backup_pull import BackupReceiver
from rollgate.core.estimate import remaining_seconds
from rollgate.core.executor import LEFT_AS_FOUND, CommandResult, Executor, TransportError
from rollgate.core.inventory import Inventory
from rollgate.core.journal import JournalWriteError, JournalWriter
from rollgate.core.methods import Cleanup
from rollgate.core.notify import Notifier, end_text, gate_text
from rollgate.core.plan import Gate, Phase, Plan, Stage, Step
from rollgate.core.recipes import fill_runtime
from rollgate.core.releases import release_for_major
from rollgate.core.report import span_words
from rollgate.core.roles import ROLES
from rollgate.core.secrets import Secrets
from rollgate.core.state import FINISHED_OK, RunState, apply
from rollgate.core.transports.remote_job import DEFAULT_JOB_ROOT, job_name, run_dir
from rollgate.core.window import Window
from rollgate.core.words import (
    RUN_PAUSED,
    STEP_FAILED,
    STEP_NOT_NEEDED,
    STEP_OK,
    phase_word,
    run_word,
)

DATA_PLANE_STAGES = ("canary", "batch", "network")
# Stages whose failed nodes count against the phase's failure budget. A canary is not among
# them: a failed canary opens a failure gate at once, and batches never start after it.
BUDGET_STAGES = ("batch", "network")
# Phases of these tiers may run before the maintenance window opens (kolla's preparation).
BEFORE_WINDOW = ("prepare",)
# waits for a restarted service's heartbeat: limited by policy.heartbeat_timeout
HEARTBEAT_WAITS = ("wait-compute-up", "wait-agents-up")
PLAN_GATE_KINDS = ("phase", "canary", "step", "downtime", "window")
AUTO_OPERATOR = "auto-approve"


def _wrong_release(step: Step, version: str) -> str:
    """Why an installed package version is not the step's expected release ("" if it is)."""
    expect, service = str(step.args["expect"]), str(step.args.get("service", ""))
    major = re.match(r"^(?:\d+:)?(\d+)\.", version.strip())
    release = release_for_major(service, int(major.group(1))) if major else None
    if release is not None and release.id == expect:
        return ""
    found = release.label if release is not None else "no known release"
    return (
        f"{step.node} runs {service} {version.strip() or '(no version)'}, which is {found}, "
        f"not the target {expect}: the package did not move"
    )


def _wrong_output(step: Step, printed: str) -> str:
    """What is wrong with the last line a check printed ("" when it is what the plan expects):
    `expect` a version of the target release, `expect_line` exactly that line, `expect_match`
    a line the regular expression matches whole."""
    if "expect" in step.args:
        return _wrong_release(step, printed)
    if "expect_line" in step.args and printed.strip() != step.args["expect_line"]:
        return f"{step.node} printed {printed.strip()!r}, not {step.args['expect_line']!r}"
    if "expect_match" in step.args and not re.fullmatch(
        str(step.args["expect_match"]), printed.strip()
    ):
        return f"{step.node} printed {printed.strip()!r}"
    return ""


def _on_node(step: Step) -> str:
    """The step's title, naming its node once."""
    return step.title if step.node in step.title else f"{step.title} on {step.node}"


# The fields of each event that carry free text (command output, errors, comments, reasons,
# commands): masked for secret values and credential forms before they are journalled.
_FREE_TEXT: dict[type[ev.Event], tuple[str, ...]] = {
    ev.StepOutput: ("lines",),
    ev.StepStarted: ("command",),
    ev.StepFinished: ("error",),
    ev.GateOpened: ("title", "summary", "choices"),
    ev.GateDecided: ("comment",),
    ev.OperatorNote: ("text",),
    ev.RunPaused: ("reason",),
    ev.RunAborted: ("reason",),
    ev.RunFinished: ("error",),
    ev.NotificationFailed: ("error",),
}


class CommandRejected(Exception):
    """A command that does not fit the run's current state (no gate open, wrong option)."""


class _Abort(Exception):
    """Internal: unwinds a lane when the run is aborted, stopped, paused-and-left or broken."""


# Why the run must end early (Engine._stop): aborted (running commands terminated), stopped (a
# gate was rejected), paused (the driver leaves, the run stays resumable), error (a bug).
HALT_MODES = ("aborted", "stopped", RUN_PAUSED, "error")


@dataclass
class EngineOptions:
    operator: str
    run_id: str
    auto_approve: bool = False
    backoff: float = 0.5  # first transport retry delay in seconds; doubles each retry
    flush_interval: float = 0.1  # how often buffered output becomes StepOutput events
    status_interval: float = 10.0  # how often service states are polled (0: never)
    secrets: Secrets = field(default_factory=Secrets)  # filled into commands, masked in events
    dry_run: bool = False  # nothing runs: checks of what a command printed are not made
    job_root: str = DEFAULT_JOB_ROOT  # where steps' job directories live on the nodes
    keep_jobs: bool = False  # keep them after the run (else removed when every job ended)
    backup_root: Path | None = None  # where pull-* steps copy backups (the run's backups/)
    window: Window | None = None  # the maintenance window
    outside_window: bool = False  # --outside-window: starting outside it was asked for
    host: str = ""  # the machine this engine runs on (watchers see who drives from where)
    past_pace: float | None = None  # seconds per step of past runs of the cloud (estimates)
    notifier: Notifier | None = None  # the inventory's notify: (gates waiting, failures, end)


class Engine:
    def __init__(
        self,
        plan: Plan,
        inventory: Inventory,
        executor: Executor,
        options: EngineOptions,
        *,
        journal: JournalWriter | None = None,
        history: list[ev.Event] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.plan = plan
        self.inventory = inventory
        self.executor = executor
        self.options = options
        self.journal = journal
        self.clock = clock
        self.monotonic = monotonic  # injectable, with clock, for reproducible journals
        self.history: list[ev.Event] = list(history or [])
        self.state = RunState.initial(plan)
        for event in self.history:
            apply(self.state, event)
        self.resumed = bool(self.history)
        self.state.gate = None  # as RunStarted will: the new driver asks open gates again
        self._seq = self.state.last_seq
        self._nodes = {n.name: n for n in inventory.nodes}
        self._sites = {s.name: s for s in inventory.sites}
        self._new_event = asyncio.Event()
        self._paused = False  # a resumed run starts running (RunStarted says so)
        self._holds: dict[str, int] = {}  # phase id -> failure-budget gates open in it
        self._wakeup = asyncio.Event()  # set (and replaced) when pause, holds or stop change
        self._gate_lock = asyncio.Lock()
        self._notifications: set[asyncio.Task[None]] = set()
        self._notify_lock = asyncio.Lock()
        self._window_lock = asyncio.Lock()  # one WINDOW OVER question for sites at once
        self._gate_future: asyncio.Future[tuple[str, str]] | None = None
        self._stop: str | None = None  # one of HALT_MODES once the run must end
        self._error = ""
        self._unstoppable = False  # a command that could not be verified stopped
        self._running: set[asyncio.Task[Any]] = set()
        self._buffers: dict[tuple[str, str], list[str]] = {}
        self._printed: dict[str, str] = {}  # step -> its last line of standard output
        self._stage_kind = {st.id: st.kind for p in plan.phases for st in p.stages}
        self._plan_steps = {s.id: s for s in plan.steps}
        # the failure budget spent so far, per phase: data-plane steps left failed
        self._phase_failures: dict[str, int] = {}
        for step in self.state.steps.values():
            if step.status in ("failed", "timed_out", "unreachable") and (
                self._stage_kind.get(step.stage) in BUDGET_STAGES
            ):
                self._phase_failures[step.phase] = self._phase_failures.get(step.phase, 0) + 1
        self.finished = asyncio.Event()

    # ---------------------------------------------------------------- events

    def emit(self, cls: type[ev.Event], **fields: Any) -> ev.Event:
        if cls is not ev.StepOutput:
            self._flush_output()
        for name in _FREE_TEXT.get(cls, ()):  # nothing secret reaches the journal or a view
            value = fields.get(name)
            if isinstance(value, str):
                fields[name] = self.options.secrets.mask(value)
            elif isinstance(value, tuple):
                fields[name] = tuple(self.options.secrets.mask(v) for v in value)
        self._seq += 1
        event = cls(seq=self._seq, time=self.clock(), mono=self.monotonic(), **fields)
        if self.journal is not None:
            self.journal.append(event)  # durable before we act on it: see _commit
        apply(self.state, event)
        self.history.append(event)
        self._new_event.set()
        self._new_event = asyncio.Event()
        return event

    async def _commit(self) -> None:
        """Make every event so far durable; called before the engine acts on them (starting
        a command, waiting at or answering a gate). Lanes that get here together share one
        fsync. A journal that cannot be written stops the run: nothing is acted on that is
        not on disk."""
        if self.journal is None:
            return
        try:
            await self.journal.commit()
        except JournalWriteError as exc:
            self._journal_failed(exc)
            raise _Abort from None

    def _journal_failed(self, exc: JournalWriteError) -> None:
        if self._stop == "error" and self._error:
            return
        self._error = str(exc)
        self._halt("error")

    async def wait_for_event_after(self, count: int) -> None:
        """Wait until history holds more than `count` events or the run finished."""
        while len(self.history) <= count and not self.finished.is_set():
            waiter = self._new_event
            done = asyncio.ensure_future(self.finished.wait())
            try:
                await asyncio.wait(
                    {asyncio.ensure_future(waiter.wait()), done},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                done.cancel()

    def _on_output(self, step: Step) -> Callable[[str, str], None]:
        def collect(stream: str, line: str) -> None:
            self._buffers.setdefault((step.id, stream), []).append(line)

        return collect

    def _flush_output(self, step_id: str | None = None) -> None:
        for key in list(self._buffers):
            if step_id is not None and key[0] != step_id:
                continue
            lines = self._buffers.pop(key)
            if lines:
                self.emit(ev.StepOutput, step=key[0], stream=key[1], lines=tuple(lines))

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_interval)
            self._flush_output()
            await self._commit()

    async def _poll_status(self) -> None:
        """Turn the API's service and agent states into NodeStatus events, only on change."""
        poll = getattr(self.executor, "poll_status", None)
        if poll is None or self.options.status_interval <= 0:
            return
        last: dict[str, dict[str, str]] = {}
        while True:
            for site in self._sites.values():
                try:
                    hosts = await poll(site)
                except Exception:
                    continue
                for host, services in hosts.items():
                    if host in self._nodes and last.get(host) != services:
                        last[host] = services
                        compute = services.get("nova-compute")
                        self.emit(
                            ev.NodeStatus,
                            node=host,
                            services=dict(services),
                            disabled=compute.endswith("/disabled") if compute else None,
                        )
            await asyncio.sleep(self.options.status_interval)

    # ---------------------------------------------------------------- commands

    async def send(self, command: ev.Command) -> None:
        """Apply an operator command, durably; raises CommandRejected when it does not fit."""
        self._accept(command)
        try:
            await self._commit()
        except _Abort:
            raise CommandRejected(f"not recorded: {self._error}") from None

    def _accept(self, command: ev.Command) -> None:
        kind = command.kind
        if self.finished.is_set():
            raise CommandRejected(f"the run has ended ({self.state.status})")
        if kind == "note":
            self.emit(ev.OperatorNote, operator=command.operator, text=command.comment)
            return
        if kind == "quit":
            self.leave_paused(command.operator, command.comment or "the driver quit; resumable")
            return
        gate = self.state.gate
        if kind == "abort" and (gate is None or "abort" not in gate.options or self._stop):
            self.abort(command.operator, command.comment)
            return
        if self._stop:
            raise CommandRejected(f"the run is ending ({self._stop})")
        if kind == "pause":
            if self.state.status != "running":
                raise CommandRejected(f"the run is {self.state.status}; only a running run pauses")
            self._paused = True
            self.emit(ev.RunPaused, operator=command.operator, reason=command.comment)
            self._wake()
            return
        if kind == "resume":
            if self.state.status != "paused":
                raise CommandRejected(f"the run is {self.state.status}, not paused")
            self.emit(ev.RunResumed, operator=command.operator)
            self._paused = False
            self._wake()
            return
        if gate is None or self._gate_future is None:
            raise CommandRejected("no gate is open")
        if command.gate is not None and command.gate != gate.id:
            raise CommandRejected(f"gate {command.gate!r} is no longer open (now: {gate.id!r})")
        if kind not in gate.options:
            raise CommandRejected(f"this gate takes {', '.join(gate.options)}, not {kind}")
        if kind == "skip" and not command.comment.strip():
            raise CommandRejected("skipping needs a reason")
        self.emit(
            ev.GateDecided,
            gate=gate.id,
            decision=kind,
            operator=command.operator,
            comment=command.comment,
        )
        if not self._gate_future.done():
            self._gate_future.set_result((kind, command.comment))
        if kind == "abort":
            self.abort(command.operator, command.comment, decided=True)

    def abort(self, operator: str, reason: str, decided: bool = False) -> None:
        """Abort: running commands are terminated, nothing new starts, the open gate (if any)
        is decided `abort`."""
        if self._stop == "aborted" or self.finished.is_set():
            return
        self.emit(ev.RunAborted, operator=operator, reason=reason)
        if self.state.gate is not None and not decided:
            self.emit(
                ev.GateDecided,
                gate=self.state.gate.id,
                decision="abort",
                operator=operator,
                comment=reason,
            )
        self._halt("aborted")
        for task in list(self._running):
            task.cancel()

    @property
    def stopping(self) -> str | None:
        """Why the run is ending early (one of HALT_MODES), once it is; running steps may
        still be finishing."""
        return self._stop

    def leave_paused(self, operator: str, reason: str) -> None:
        """The driver leaves and the run stays resumable: running steps finish, nothing new
        starts, an open gate stays undecided (the next driver asks it again)."""
        if self._stop or self.finished.is_set():
            return
        if self.state.status == "running":
            self.emit(ev.RunPaused, operator=operator, reason=reason)
        self._halt(RUN_PAUSED)

    def _halt(self, mode: str) -> None:
        """End the run early: lanes unwind at their next step, the open gate is released
        without a decision (unless one was journalled)."""
        if self._stop is None or mode == "aborted":
            self._stop = mode
        if self._gate_future is not None and not self._gate_future.done():
            self._gate_future.set_result(("halt", ""))
        self._wake()

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    # ---------------------------------------------------------------- gates

    async def _gate(
        self,
        gate_id: str,
        kind: str,
        title: str,
        *,
        summary: str = "",
        options: tuple[str, ...] = ("approve", "reject"),
        step: str | None = None,
        automatic: bool = True,
        choices: tuple[str, ...] = (),
    ) -> tuple[str, str]:
        """Open a gate and wait for its decision. `automatic`: --auto-approve may answer it
        (never for a gate that reports something went wrong)."""
        async with self._gate_lock:
            if self._stop:
                raise _Abort
            if kind in PLAN_GATE_KINDS and self.state.approved(gate_id):
                return ("approve", "")
            opened = self.emit(
                ev.GateOpened,
                gate=gate_id,
                kind=kind,
                title=title,
                summary=summary,
                options=options,
                step=step,
                choices=choices or self._plain_choices(kind, options),
            )
            self._gate_future = asyncio.get_running_loop().create_future()
            # --auto-approve answers in the same breath, before anyone watching sees it open
            if self.options.auto_approve and automatic and "approve" in options:
                self._accept(
                    ev.Command(
                        "approve", AUTO_OPERATOR, "approved automatically (--auto-approve)", gate_id
                    )
                )
            elif self.options.auto_approve and automatic and "rerun" in options:
                self._accept(
                    ev.Command(
                        "rerun", AUTO_OPERATOR, "re-run automatically (--auto-approve)", gate_id
                    )
                )
            else:  # a person must decide: tell whoever the inventory says should hear
                assert isinstance(opened, ev.GateOpened)
                self._tell(*gate_text(opened))
            await self._commit()
            decision = await self._gate_future
            self._gate_future = None
        if decision[0] in ("abort", "halt") or self._stop:
            raise _Abort
        if decision[0] == "reject" and kind in PLAN_GATE_KINDS:
            self._halt("stopped")
            raise _Abort
        return decision

    def _tell(self, what: str, text: str) -> None:
        """Notify (inventory `notify:`) in the background; a failure is journalled, and the
        run goes on."""
        notifier = self.options.notifier
        if notifier is None:
            return

        async def send() -> None:
            async with self._notify_lock:  # told in the order they happened (the lock is FIFO)
                failures = await notifier.send(what, text)
            for channel, error in failures:
                self.emit(ev.NotificationFailed, channel=channel, about=what, error=error)

        task = asyncio.get_running_loop().create_task(send())
        self._notifications.add(task)
        task.add_done_callback(self._notifications.discard)

    async def _notifications_sent(self) -> None:
        """Let the notifications under way finish (each has its own timeout)."""
        if self._notifications:
            await asyncio.gather(*self._notifications, return_exceptions=True)

    async def _plan_gate(self, gate: Gate | None, summary: str = "") -> None:
        if gate is not None:
            await self._gate(gate.id, gate.kind, gate.title, summary=summary)

    def _summary_before(self, what: str) -> str:
        counts = self.state.step_counts()
        done = sum(counts.get(k, 0) for k in STEP_OK)
        parts = [f"done so far: {done}/{len(self.state.steps)} steps"]
        for word in ("skipped", "interrupted"):
            if counts.get(word):
                parts.append(f"{counts[word]} {word}")
        parts.append(f"{self.state.failures_now} failed")
        parts.append(f"{counts.get('warning', 0)} warnings acknowledged")
        return ", ".join(parts) + f"; next: {what}"

    def _estimate_past_window(self) -> str:
        """At a phase gate (a safe point, between phases): when the estimate of the work left
        runs past the window's end, say so ("" otherwise)."""
        window = self.options.window
        now = self.clock()
        left = remaining_seconds(self.state, now, self.options.past_pace)
        if window is None or left is None or now + left <= window.end:
            return ""
        over = now + left - window.end
        return (
            f"\nESTIMATE: about {span_words(left)} of work left, {span_words(over)} past the "
            "window's end: reject stops here, between phases, resumable in the next window"
        )

    # ---------------------------------------------------------------- running

    async def run(self) -> str:
        """Drive the plan to the end and return the run's word (core/words.py). Returns only
        after every branch ended; RunFinished is always the last event."""
        self.emit(
            ev.RunStarted,
            run_id=self.options.run_id,
            operator=self.options.operator,
            plan_digest=self.plan.digest,
            resumed=self.resumed,
            auto_approve=self.options.auto_approve,
            host=self.options.host,
        )
        flusher = asyncio.create_task(self._flusher())
        poller = asyncio.create_task(self._poll_status())
        try:
            if self.resumed:
                await self._settle_interrupted()
            window_asked = False
            for _, wave in groupby(self.plan.phases, key=lambda p: p.wave):
                phases = list(wave)
                if not window_asked and any(p.tier not in BEFORE_WINDOW for p in phases):
                    window_asked = True  # preparation may run before the window; no more
                    await self._window_start_gate(
                        prepared=self.plan.phases[0].tier in BEFORE_WINDOW
                    )
                    if self._stop:
                        break
                limit = asyncio.Semaphore(self.plan.policy.get("site_concurrency", 1))
                await self._all(self._phase(p, limit) for p in phases)
                if self._stop:
                    break
        except _Abort:
            pass
        except Exception as exc:  # a bug: say so in the journal, never leave watchers hanging
            self._error = f"engine error: {type(exc).__name__}: {exc}".splitlines()[0]
            self._halt("error")
        finally:
            flusher.cancel()
            poller.cancel()
            await asyncio.gather(flusher, poller, return_exceptions=True)
        if self._stop == "error":
            outcome = "failed"
        elif self._stop:
            outcome = self._stop
        else:
            outcome = run_word(s.status for s in self.state.steps.values())
            if outcome == "incomplete":  # every phase ran, yet steps are unsettled: a bug
                outcome, self._error = "failed", "engine error: steps left unsettled"
        await self._clean_jobs()
        if outcome in ("aborted", "stopped", "failed") and not self.options.dry_run:
            await self._method_cleanups()
        if not self.options.dry_run:  # told before RunFinished, which stays the last event
            self._tell(*end_text(ev.RunFinished(seq=0, time=0, outcome=outcome, error=self._error)))
        await self._notifications_sent()
        self.emit(ev.RunFinished, outcome=outcome, error=self._error)
        with contextlib.suppress(_Abort):  # a journal that failed stays as it was, readable
            await self._commit()
        if self.journal is not None and self.journal.lost:
            with contextlib.suppress(OSError):  # what the run recorded, from memory
                self.journal.recover(self.history)
        self.finished.set()
        self._new_event.set()
        return outcome

    async def _window_start_gate(self, *, prepared: bool = False) -> None:
        """Outside the maintenance window the upgrade starts only when an operator says so at
        a gate (--auto-approve never does), or --outside-window said so, journalled. Phases
        that prepare (`prepared`: they ran already) are not held back by the window."""
        window = self.options.window
        reason = window.outside(self.clock()) if window is not None else ""
        if not reason:
            return
        what = "the upgrade (the preparation before it is done)" if prepared else "the run"
        if self.options.outside_window:
            self.emit(
                ev.OperatorNote,
                operator=self.options.operator,
                text=f"started outside the window with --outside-window: {reason}",
            )
            return
        await self._gate(
            f"gate:window:start:{self._seq}",
            "window",
            f"{reason}: start {what} outside it?",
            automatic=False,
            choices=(
                "approve: start now, outside the window (journalled with your name)",
                "reject: start nothing more; the run can be resumed inside the window",
            ),
        )

    async def _window_over_gate(self, phase: Phase) -> None:
        """Past the window's end no new phase starts until an operator approves going on."""
        window = self.options.window
        if window is None or self.clock() <= window.end:
            return
        if any(g.kind == "window" and "past" in g.id and g.decision == "approve"
               for g in self.state.gates):  # fmt: skip
            return  # approved once for the rest of the run
        async with self._window_lock:  # sites run at once: one question
            if any(g.kind == "window" and "past" in g.id and g.decision == "approve"
                   for g in self.state.gates):  # fmt: skip
                return
            await self._gate(
                f"gate:window:past:{self._seq}",
                "window",
                f"WINDOW OVER: {window.outside(self.clock())}; start {phase.title} at "
                f"{phase.site}, and the phases after it, past the window's end?",
                automatic=False,
                summary=self._summary_before(f"{phase.title} at {phase.site}"),
                choices=(
                    "approve: go on past the window's end (journalled with your name)",
                    "reject: start no new phase; running steps finish; resume later",
                ),
            )

    async def _method_cleanups(self) -> None:
        """A run that ends part-way: what its deployment method needs undone on each node
        (core/methods `Method.cleanups`), each run once and journalled."""

        async def clean(cleanup: Cleanup) -> None:
            error = ""
            try:
                result = await self.executor.run(
                    self._nodes[cleanup.node],
                    cleanup.command,
                    on_output=lambda stream, line: None,
                    timeout=60,
                    job=None,
                )
                if result.exit_status != 0:
                    error = result.error or f"exit status {result.exit_status}"
            except TransportError as exc:
                error = str(exc)
            self.emit(
                ev.CleanupDone, node=cleanup.node, what=cleanup.what, ok=not error, error=error
            )

        wanted = methods.method(self.plan.method).cleanups(self.plan, self.state)
        await asyncio.gather(*(clean(c) for c in wanted if c.node in self._nodes))

    async def _clean_jobs(self) -> None:
        """Remove the run's job directories from the nodes once no job can be running
        (a job that could not be stopped keeps its directory, for the operator to look at)."""
        clean = getattr(self.executor, "clean_jobs", None)
        if clean is None or self.options.keep_jobs or self._unstoppable:
            return
        try:
            await clean(self._jobs_dir())
        except Exception as exc:  # cleaning is a courtesy: say so, never fail the run for it
            self.emit(
                ev.OperatorNote, operator="rollgate", text=f"job directories not removed: {exc}"
            )

    def _runtime(self, command: str | None) -> str | None:
        """A command with the values only the run knows: its id (backup names)."""
        if command is None or "{{" not in command:
            return command
        return fill_runtime(command, {"run_id": self.options.run_id})

    def _jobs_dir(self) -> str:
        return run_dir(self.options.job_root, self.options.run_id)

    def _job(self, step: Step, attempt: int) -> str:
        """The job directory of one attempt of a step on its node: the same attempt always
        names the same job, so running it again re-attaches, never starts a second copy."""
        return f"{self._jobs_dir()}/{job_name(step.id, attempt)}"

    async def _all(self, coroutines: Any) -> None:
        """Run branches together and wait for every one of them to end. The first that fails
        halts the others (they unwind at their next step); then its exception is raised."""
        tasks = [asyncio.ensure_future(c) for c in coroutines]
        first: BaseException | None = None
        for future in asyncio.as_completed(tasks):
            try:
                await future
            except _Abort as exc:
                first = first or exc
            except Exception as exc:
                if first is None or isinstance(first, _Abort):
                    first = exc
                if self._stop is None:
                    self._error = f"engine error: {type(exc).__name__}: {exc}".splitlines()[0]
                    self._halt("error")
        if first is not None:
            raise first

    async def _settle_interrupted(self) -> None:
        for step in [s for s in self.state.steps.values() if s.status == "interrupted"]:
            title = self.plan_step(step.id).title
            why = await self._follow_interrupted(self.plan_step(step.id), step.attempts)
            if not why:
                continue  # the node told how it ended: settled without asking
            decision, comment = await self._gate(
                f"gate:interrupted:{step.id}:{self._seq}",
                "interrupted",
                f"'{title}' was running on {step.node} when the run stopped, and {why}: run "
                "it again, or mark it done if you checked it finished?",
                summary=self._summary_before(f"decide about '{title}' on {step.node}"),
                options=("rerun", "mark-done", "abort"),
                step=step.id,
            )
            if decision == "mark-done":
                self.emit(
                    ev.StepFinished,
                    step=step.id,
                    attempt=step.attempts,
                    outcome="ok",
                    error=f"marked done by the operator: {comment}".rstrip(": "),
                )

    async def _follow_interrupted(self, step: Step, attempt: int) -> str:
        """Re-attach to a step a previous driver left running: follow its job to the end and
        record how it ended. Returns "" when settled, else why the node cannot tell."""
        follow = getattr(self.executor, "follow", None)
        if step.executor != "ssh" or follow is None or not attempt:
            return "Rollgate cannot ask the node how it ended"
        self.emit(
            ev.StepOutput,
            step=step.id,
            stream="info",
            lines=(f"re-attaching to attempt {attempt} on {step.node}",),
        )
        timeout = float(self.plan.policy.get("step_timeout", 1800))
        try:
            result = await follow(
                self._nodes[step.node],
                self._job(step, attempt),
                on_output=self._on_output(step),
                timeout=timeout,
            )
        except TransportError as exc:
            return f"the node could not be asked ({exc})"
        self._flush_output(step.id)
        if result is None:
            return "the node has no record of it (restarted, or its job directory is gone)"
        if result.exit_status is None:
            self._unstoppable = self._unstoppable or result.terminated is not True
            return f"following it ended without an exit status ({result.error})"
        outcome = step.exit_codes.get(result.exit_status, "failed")
        if outcome == "repeat":
            return f"it finished with more to do (exit {result.exit_status})"
        self.emit(
            ev.StepFinished,
            step=step.id,
            attempt=attempt,
            outcome="ok" if outcome == "warning" else outcome,
            exit_status=result.exit_status,
            error="" if outcome in ("ok", "warning") else f"exit status {result.exit_status}",
        )
        return ""

    def plan_step(self, step_id: str) -> Step:
        return self._plan_steps[step_id]

    async def _phase(self, phase: Phase, limit: asyncio.Semaphore) -> None:
        phase_steps = [self.state.steps[s.id] for s in phase.steps]
        if all(s.done for s in phase_steps):
            return
        async with limit:
            if self._stop:
                return
            try:
                await self._window_over_gate(phase)
                await self._plan_gate(
                    phase.gate,
                    self._summary_before(f"{phase.title} at {phase.site}: {len(phase.steps)} steps")
                    + self._estimate_past_window(),
                )
                self.emit(ev.PhaseStarted, phase=phase.id)
                canary = [st for st in phase.stages if st.kind == "canary"] or None
                data_plane_ran = False
                for stage in phase.stages:
                    if stage.kind in DATA_PLANE_STAGES:
                        data_plane_ran = True
                    elif stage.kind == "post" and data_plane_ran:
                        # nodes that failed within the budget are decided before anything
                        # that assumes the data plane moved (the restarts that drop the RPC
                        # pin, online migrations): retried, or skipped with their steps here
                        await self._phase_failures_gate(phase)
                        data_plane_ran = False
                    if canary is not None and stage.kind == "batch":
                        await self._canary_verdict(phase, canary, stage)
                        canary = None  # asked once, before the first batch
                        await self._stage(phase, stage, gated=True)
                    else:
                        await self._stage(phase, stage)
                await self._phase_failures_gate(phase)
            except _Abort:
                self.emit(
                    ev.PhaseFinished,
                    phase=phase.id,
                    outcome="aborted" if self._stop == "aborted" else "stopped",
                )
                raise
            word = phase_word(self.state.steps[s.id].status for s in phase.steps)
            self.emit(ev.PhaseFinished, phase=phase.id, outcome=word)

    async def _canary_verdict(self, phase: Phase, canary: list[Stage], batch: Stage) -> None:
        """Before the first batch: the canary gate claims the canary is upgraded only when
        every step of its stages finished ok; otherwise the operator must say, knowingly,
        whether the batches go on (never --auto-approve)."""
        steps = [self.state.steps[s.id] for stage in canary for s in stage.steps]
        if all(s.status in STEP_OK for s in steps):
            await self._plan_gate(batch.gate, self._summary_before(batch.title))
            return
        not_ok = [s for s in steps if s.status not in STEP_OK]
        nodes = sorted({s.node for s in not_ok})
        what = "; ".join(
            f"{self.plan_step(s.id).title} on {s.node}: {s.status}"
            + (f" ({s.error})" if s.error else "")
            for s in not_ok[:5]
        )
        await self._gate(
            f"gate:{phase.id}/canary-not-upgraded:{self._seq}",
            "canary",
            f"the canary {', '.join(nodes)} at {phase.site} was NOT upgraded ({what}): "
            "start the batches anyway?",
            summary=self._summary_before(batch.title),
            automatic=False,
        )

    async def _stage(self, phase: Phase, stage: Stage, *, gated: bool = False) -> None:
        if all(self.state.steps[s.id].done for s in stage.steps):
            return
        if not gated:
            await self._plan_gate(stage.gate, self._summary_before(stage.title))
        self.emit(ev.StageStarted, stage=stage.id)
        lanes: dict[str, list[Step]] = {}
        for step in stage.steps:
            lanes.setdefault(step.node, []).append(step)
        await self._all(self._lane(phase, stage.kind, steps) for steps in lanes.values())
        word = phase_word(self.state.steps[s.id].status for s in stage.steps)
        self.emit(ev.StageFinished, stage=stage.id, outcome=word)

    async def _lane(
        self, phase: Phase, stage_kind: str, steps: list[Step], *, retry: bool = False
    ) -> None:
        """One node's steps in order.

        A failure in a batch or network stage counts against the phase's failure budget:
        within it, this node stays failed and the others go on (the phase's failures gate
        decides at its end); past it, a failure gate opens and no new step starts in the phase
        until it is decided. Anywhere else (control plane, canary) a failure gate opens at
        once. Skipping a data-plane step skips the node's remaining steps in the phase too
        (the final restarts included), leaving it fenced; skipping a control-plane step skips
        that step only.

        A step found failed when the lane starts failed under an earlier driver (`retry`
        False) or is being retried (`retry` True): it is never run again by itself.
        """
        # a deploy host's step in a batch (kolla's run for the batch) is not a data-plane node:
        # its failure is asked about at once, and skipping it skips that step only
        role = ROLES.get(steps[0].role) if steps else None
        data_plane = stage_kind in DATA_PLANE_STAGES and role is not None and role.data_plane
        budgeted = stage_kind in BUDGET_STAGES and data_plane
        for step in steps:
            status = self.state.steps[step.id].status
            if status in FINISHED_OK:
                continue
            counted = False  # whether this failure is in the budget already (from the journal)
            if status in ("failed", "timed_out", "unreachable") and not retry:
                if budgeted and not self._gate_left_open(step.id):
                    return  # left failed within the budget: the phase's failures gate asks
                outcome, counted = status, True  # ask its failure gate again
            else:
                outcome = await self._run_step(step)
            while outcome not in FINISHED_OK:
                if budgeted:
                    if not counted:
                        self._phase_failures[phase.id] = self._phase_failures.get(phase.id, 0) + 1
                    counted = False
                    spent = self._phase_failures[phase.id]
                    budget = int(self.plan.policy.get("failure_budget", 0))
                    if spent <= budget:
                        return  # within budget: this node stays failed, the others go on
                    self._holds[phase.id] = self._holds.get(phase.id, 0) + 1
                    try:
                        decision = await self._failure_gate(
                            step,
                            f"failure budget spent at {phase.site}: {spent} failed nodes "
                            f"(budget {budget}); no new step starts in this phase until decided",
                            self._would_skip(phase, step, data_plane),
                        )
                    finally:
                        self._holds[phase.id] -= 1
                        self._wake()
                    self._phase_failures[phase.id] -= 1
                else:
                    why = "the canary failed" if stage_kind == "canary" else "a step failed"
                    decision = await self._failure_gate(
                        step, why, self._would_skip(phase, step, data_plane)
                    )
                if decision[0] == "skip":
                    skipped = self._would_skip(phase, step, data_plane)
                    for each in skipped:
                        if not self.state.steps[each.id].done:
                            self.emit(
                                ev.StepFinished,
                                step=each.id,
                                attempt=self.state.steps[each.id].attempts,
                                outcome="skipped",
                                error=f"skipped: {decision[1]}"
                                if each is step
                                else f"skipped with '{step.title}': {decision[1]}",
                            )
                    if data_plane:
                        return
                    break
                outcome = await self._run_step(step)  # retry

    def _would_skip(self, phase: Phase, step: Step, data_plane: bool) -> list[Step]:
        """What skipping a failed step skips: on a data-plane node its steps left in the phase
        (it stays as it is, fenced), on the control plane that step only."""
        if not data_plane:
            return [step]
        rest = [
            s
            for s in phase.steps
            if s.node == step.node and s is not step and not self.state.steps[s.id].done
        ]
        return [step, *rest]

    def _gate_left_open(self, step_id: str) -> bool:
        """Whether a failure gate about this step was open, undecided, when a driver stopped."""
        return any(
            g.step == step_id and g.kind == "failure" and g.decision is None
            for g in self.state.gates
        )

    async def _phase_failures_gate(self, phase: Phase) -> None:
        """Nodes that failed within the budget: retry them, skip them, or abort."""
        while True:
            # not "interrupted": a step a stopped driver left running was asked about when
            # the run resumed (run again by its stage, or marked done), it did not fail
            failed = [
                s
                for s in phase.steps
                if not self.state.steps[s.id].done
                and self.state.steps[s.id].status not in ("pending", "interrupted")
            ]
            if not failed:
                return
            nodes = sorted({s.node for s in failed})
            broken = [s for s in failed if self.state.steps[s.id].status in STEP_FAILED]
            left = sum(
                1 for s in phase.steps if s.node in nodes and not self.state.steps[s.id].done
            )
            decision, reason = await self._gate(
                f"gate:failures:{phase.id}:{self._seq}",
                "failure",
                f"{len(nodes)} node(s) failed in {phase.title} at {phase.site}: "
                f"{', '.join(nodes[:10])}; retry them, skip them (with a reason), or abort?",
                summary=self._failure_detail(broken)
                + "\n"
                + self._summary_before("the rest of the phase"),
                options=("retry", "skip", "abort"),
                choices=(
                    f"retry: run the failed step of each of the {len(nodes)} node(s) again, "
                    "then their remaining steps in this phase",
                    f"skip (with a reason): the {left} step(s) those nodes have left in this "
                    "phase are not run; they stay as they are now (a fenced compute stays "
                    "disabled in the scheduler), not upgraded",
                    self._abort_choice(),
                ),
            )
            self._phase_failures[phase.id] = 0
            if decision == "skip":
                for node in nodes:
                    for step in phase.steps:
                        if step.node == node and not self.state.steps[step.id].done:
                            self.emit(
                                ev.StepFinished,
                                step=step.id,
                                attempt=self.state.steps[step.id].attempts,
                                outcome="skipped",
                                error=f"skipped: {reason}",
                            )
                return
            lanes: dict[str, tuple[str, list[Step]]] = {}
            for stage in phase.stages:
                for step in stage.steps:
                    if step.node in nodes and not self.state.steps[step.id].done:
                        key = f"{stage.id}/{step.node}"
                        lanes.setdefault(key, (stage.kind, []))[1].append(step)
            await self._all(
                self._lane(phase, kind, steps, retry=True) for kind, steps in lanes.values()
            )

    async def _failure_gate(
        self, step: Step, why: str, skipped: list[Step] | None = None
    ) -> tuple[str, str]:
        state = self.state.steps[step.id]
        return await self._gate(
            f"gate:failure:{step.id}:{state.attempts}",
            "failure",
            f"{why}: {_on_node(step)} ended {state.status}"
            f" ({state.error or 'no output'}); retry, skip with a reason, or abort?",
            summary=self._failure_detail([step]),
            options=("retry", "skip", "abort"),
            step=step.id,
            choices=(
                f"retry: run '{step.title}' on {step.node} again (attempt {state.attempts + 1})",
                self._skip_choice(step.node, skipped or [step]),
                self._abort_choice(),
            ),
        )

    def _failure_detail(self, steps: list[Step]) -> str:
        """What failed, for the gate itself: each step's title and node, its command, its exit
        status or error, and the last lines it printed."""
        lines: list[str] = []
        for step in steps[:5]:
            state = self.state.steps[step.id]
            lines.append(f"✘ {_on_node(step)}: {state.status}")
            if step.command:
                lines.append(f"  command: {self._runtime(step.command)}")
            if state.exit_status is not None:
                lines.append(f"  exit status {state.exit_status}")
            if state.error and state.error != f"exit status {state.exit_status}":
                lines.append(f"  {state.error}")
            lines += [f"  | {line}" for line in list(state.tail)[-5:]]
        if len(steps) > 5:
            lines.append(f"... and {len(steps) - 5} more failed steps")
        return "\n".join(lines)

    def _skip_choice(self, node: str, skipped: list[Step]) -> str:
        titles = [s.title for s in skipped]
        listed = "; ".join(titles[:4]) + (
            f"; and {len(titles) - 4} more" if len(titles) > 4 else ""
        )
        fenced = self.state.nodes[node].disabled
        left = (
            "it stays disabled in the scheduler and not upgraded"
            if fenced
            else "it is left as it is now, not upgraded"
        )
        return f"skip (with a reason): {len(titles)} step(s) of {node} not run ({listed}); {left}"

    def _abort_choice(self) -> str:
        return (
            "abort: terminate every running command and stop the run; what is done stays "
            f"done; resume it later with `rollgate run INVENTORY --resume {self.options.run_id}`"
        )

    @staticmethod
    def _plain_choices(kind: str, options: tuple[str, ...]) -> tuple[str, ...]:
        """What each option of a gate does, for gates that give no more exact words."""
        words = {
            "approve": "acknowledge the warning and go on"
            if kind == "warning"
            else "go on: start what the gate holds",
            "reject": "count the step as failed (its failure gate follows)"
            if kind == "warning"
            else "stop the run here: nothing new starts; it can be resumed",
            "rerun": "run the step again from its start",
            "mark-done": "record it as finished ok, because you checked it on the node",
            "retry": "run the failed steps again",
            "skip": "leave the failed steps not run, with a reason",
            "abort": "terminate every running command and stop the run (resumable)",
        }
        return tuple(f"{o}: {words[o]}" for o in options if o in words)

    def _not_needed(self, step: Step) -> str:
        """Why a conditional step has nothing to do ("" when it must run): its `when` names an
        earlier step and the outcome that calls for it (a check that warned)."""
        when = step.args.get("when")
        if not when or self.options.dry_run:  # a dry run shows what could run
            return ""
        found = self.state.steps.get(str(when["step"]))
        if found is not None and found.status == when["outcome"]:
            return ""
        title = self.plan.step(str(when["step"])).title
        return f"'{title}' found nothing to do"

    async def _run_step(self, step: Step) -> str:
        await self._wait_runnable(step)
        if why := self._not_needed(step):
            attempt = self.state.steps[step.id].attempts
            self.emit(
                ev.StepFinished, step=step.id, attempt=attempt, outcome=STEP_NOT_NEEDED, error=why
            )
            return STEP_NOT_NEEDED
        if step.gate is not None:
            await self._plan_gate(step.gate)
            await self._wait_runnable(step)
        attempt = self.state.steps[step.id].attempts + 1
        command = self._runtime(step.command)
        self.emit(ev.StepStarted, step=step.id, node=step.node, attempt=attempt, command=command)
        await self._commit()
        started = self.monotonic()
        task = asyncio.create_task(self._execute(step, attempt))
        self._running.add(task)
        try:
            outcome, status, error = await task
        except asyncio.CancelledError:
            if self._stop != "aborted":
                raise
            outcome, status, error = (  # an in-process command (the lab, the deploy host)
                "interrupted",
                None,
                "aborted by the operator; the command was stopped",
            )
        finally:
            self._running.discard(task)
        self._flush_output(step.id)
        if outcome == "warning":
            decision, comment = await self._warning_gate(step, status)
            if decision == "reject":
                outcome, error = "failed", f"warning rejected by the operator: {comment}"
        self.emit(
            ev.StepFinished,
            step=step.id,
            attempt=attempt,
            outcome=outcome,
            exit_status=status,
            error=error,
            duration=round(self.monotonic() - started, 3),
        )
        self._after_step(step, outcome)
        if self._stop:
            raise _Abort
        return outcome

    async def _warning_gate(self, step: Step, status: int | None) -> tuple[str, str]:
        # the check's own table, line by line (an upgrade-check table is a dozen lines)
        tail = "\n".join(list(self.state.steps[step.id].tail)[-14:])
        return await self._gate(
            f"gate:warning:{step.id}:{self.state.steps[step.id].attempts}",
            "warning",
            step.args.get("warning")
            or f"{_on_node(step)} reported a warning (exit {status}): acknowledge and "
            "go on, or reject?",
            summary=tail,
            step=step.id,
        )

    def _after_step(self, step: Step, outcome: str) -> None:
        """What a finished step tells about its node: fenced, version, reachable."""
        printed = self._printed.pop(step.id, "")  # its last line of standard output
        if step.action == "verify-version" and printed and outcome not in STEP_OK:
            self.emit(  # still the old one
                ev.NodeStatus, node=step.node, package=step.args.get("package"), version=printed
            )
        if outcome not in STEP_OK:
            return
        node = self.state.nodes[step.node]
        if step.action == "disable-compute":
            self.emit(ev.NodeStatus, node=step.node, disabled=True)
        elif step.action == "enable-compute":  # unless an operator had fenced it before
            tail = self.state.steps[step.id].tail
            kept = bool(tail) and LEFT_AS_FOUND in tail[-1]
            self.emit(ev.NodeStatus, node=step.node, disabled=kept)
        elif step.action in ("record-version", "verify-version") and printed:
            key = "version_before" if step.action == "record-version" else "version"
            package = step.args.get("package")
            self.emit(
                ev.NodeStatus, node=step.node, package=package, reachable=True, **{key: printed}
            )
        elif step.executor == "ssh" and node.reachable is False:
            self.emit(ev.NodeStatus, node=step.node, reachable=True)  # it answered again

    async def _wait_runnable(self, step: Step) -> None:
        """Wait while the run is paused or a failure-budget gate holds this step's phase."""
        phase = self.state.steps[step.id].phase
        while not self._stop and (self._paused or self._holds.get(phase, 0)):
            await self._wakeup.wait()
        if self._stop:
            raise _Abort

    async def _execute(self, step: Step, attempt: int) -> tuple[str, int | None, str]:
        """Run a step to an outcome: transport errors retried with backoff (a job that started
        is re-attached, never started again), `repeat` looped (each run its own job)."""
        node = self._nodes[step.node]
        timeout, limit = self._timeout(step)
        retries_left = int(self.plan.policy.get("transport_retries", 3))
        delay = self.options.backoff
        runs = 0
        into_buffer = self._on_output(step)

        pulling = step.action.startswith("pull-") and not self.options.dry_run

        def collect(stream: str, line: str) -> None:
            if stream == "stdout" and pulling:  # a file's bytes: to disk, not the journal
                receiver.line(line)
                return
            if stream == "stdout":  # the last line it printed: what checks compare
                self._printed[step.id] = line
            into_buffer(stream, line)

        while True:
            job = self._job(step, attempt) + (f".{runs}" if runs else "")
            if pulling:  # read-only, run again on a retry: no job (it would keep a copy)
                if self.options.backup_root is None:
                    return "failed", None, "no run directory to copy backups into"
                receiver = BackupReceiver(self.options.backup_root / step.node)
                job = ""
            try:
                result = await self._call(step, node, collect, timeout, job)
            except TransportError as exc:
                if exc.retryable and retries_left > 0:
                    collect("info", f"{exc}; retrying in {delay:g}s")
                    retries_left -= 1
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                if step.executor == "cloud":  # the API, not the node, did not answer
                    self.emit(ev.NodeStatus, node=step.node, services={"api": "unreachable"})
                else:
                    self.emit(ev.NodeStatus, node=step.node, reachable=False)
                return "unreachable", None, str(exc)
            if result.interrupted or result.timed_out:
                if result.terminated is not True and step.executor == "ssh":
                    self._unstoppable = True  # its job directory stays, to look at
                outcome = "interrupted" if result.interrupted else "timed_out"
                error = result.error or f"timed out after {timeout:g}s"
                if result.timed_out and limit != "policy.step_timeout":
                    error += f" (no heartbeat within {timeout:g}s: {limit})"
                return outcome, None, error
            if result.exit_status is None:
                return "failed", None, result.error or "no exit status"
            outcome = step.exit_codes.get(result.exit_status, "failed")
            runs += 1
            if outcome == "repeat":
                if runs >= step.repeat_max:
                    return (
                        "failed",
                        result.exit_status,
                        (f"still exit {result.exit_status} (more to do) after {runs} runs"),
                    )
                continue
            error = (
                ""
                if outcome in ("ok", "warning")
                else (result.error or f"exit status {result.exit_status}")
            )
            if outcome == "ok" and pulling:
                wrong = receiver.finish()
                if wrong:
                    outcome, error = "failed", f"the copy of the backup is not whole: {wrong}"
                else:
                    self._pulled(step, receiver)
            elif outcome == "ok" and not self.options.dry_run:
                wrong = _wrong_output(step, self._printed.get(step.id, ""))
                if wrong:
                    outcome, error = "failed", wrong
            if outcome == "failed" and step.args.get("hint"):
                error = f"{error}: {step.args['hint']}"
            return outcome, result.exit_status, error

    def _pulled(self, step: Step, receiver: BackupReceiver) -> None:
        assert receiver.remote is not None and receiver.expected is not None
        self.emit(
            ev.BackupPulled,
            step=step.id,
            node=step.node,
            remote=receiver.remote,
            local=str(receiver.local),
            size=receiver.size,
            sha256=receiver.expected,
        )
        self._on_output(step)(
            "info",
            f"copied {receiver.remote} to {receiver.local} ({receiver.size} bytes, "
            f"sha256 {receiver.expected})",
        )

    def _timeout(self, step: Step) -> tuple[float, str]:
        """Seconds the step may take, and the policy setting that says so: a wait for a
        restarted service's heartbeat has its own, shorter, limit."""
        policy = self.plan.policy
        timeout = float(policy.get("step_timeout", 1800))
        if step.action in HEARTBEAT_WAITS and "heartbeat_timeout" in policy:
            heartbeat = float(policy["heartbeat_timeout"])
            if heartbeat < timeout:
                return heartbeat, "policy.heartbeat_timeout"
        return timeout, "policy.step_timeout"

    async def _call(
        self,
        step: Step,
        node: Any,
        collect: Callable[[str, str], None],
        timeout: float,
        job: str,
    ) -> CommandResult:
        if step.executor == "cloud":
            return await self.executor.cloud(
                self._sites[step.site], step.action, step.args, on_output=collect, timeout=timeout
            )
        assert step.command is not None
        local = step.executor == "local"
        # the only copy with the secrets' values in it
        command = self.options.secrets.fill(self._runtime(step.command) or "")
        return await self.executor.run(
            node, command, on_output=collect, timeout=timeout, local=local, job=job or None
        )
