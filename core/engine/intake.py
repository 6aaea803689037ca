"""Command intake: operator commands in, the run's control state out (paused, halted and why,
the open gate's decision, holds on phases), each accepted command journalled first.

The scheduler and the step runner only read this state and wait on it; a command that does
not fit the run's state is refused with CommandRejected, saying why.
"""

from __future__ import annotations

import asyncio

from rollgate.core import events as ev
from rollgate.core.client import CommandRejected
from rollgate.core.engine.options import HALT_MODES
from rollgate.core.engine.record import Halted, Record
from rollgate.core.executor import StopSignal
from rollgate.core.twins import twins_of
from rollgate.core.words import RUN_PAUSED

# The run's lifecycle: driving its plan, finishing (clean-ups, notifications; only notes and
# abort are taken), finished (RunFinished written: nothing is taken)
RUNNING, FINISHING, FINISHED = "running", "finishing", "finished"


class Intake:
    def __init__(self, record: Record):
        self.record = record
        self.lifecycle = RUNNING
        self.stop: str | None = None  # one of HALT_MODES once the run must end
        self.error = ""  # the engine's own failure, one line
        self.paused = False  # a resumed run starts running (RunStarted says so)
        self.holds: dict[str, int] = {}  # phase id -> failure-budget gates open in it
        self.outage_holds = 0  # outage gates the watch opened and no one decided yet
        # set when running commands must stop: on abort executors terminate what they run;
        # when the driver leaves, a durable job runs on for the next driver
        self.stop_signal = StopSignal()
        self.decision: asyncio.Future[tuple[str, str]] | None = None  # the open gate's
        # twin gates approved with another: gate -> (operator, comment, the gate decided)
        self.twins: dict[str, tuple[str, str, str]] = {}
        self._wakeup = asyncio.Event()  # set (and replaced) when pause, holds or stop change

    # ---------------------------------------------------------------- commands

    async def send(self, command: ev.Command) -> None:
        """Apply an operator command, durably; raises CommandRejected when it does not fit."""
        self.accept(command)
        try:
            await self.record.commit()
        except Halted:
            raise CommandRejected(f"not recorded: {self.error}") from None

    def accept(self, command: ev.Command) -> None:
        kind = command.kind
        state = self.record.state
        if self.lifecycle == FINISHED:
            raise CommandRejected(f"the run has ended ({state.status})")
        if kind == "note":
            self.record.emit(ev.OperatorNote, operator=command.operator, text=command.comment)
            return
        if self.lifecycle == FINISHING:
            if kind == "abort":  # cut the clean-ups short; the outcome is already decided
                self.stop_signal.abort()
                self.record.emit(
                    ev.OperatorNote,
                    operator=command.operator,
                    text="abort while the run was finishing: its clean-up commands are stopped"
                    + (f" ({command.comment})" if command.comment else ""),
                )
                return
            raise CommandRejected("the run is finishing: only a note or abort is taken now")
        if kind == "quit":
            self.leave_paused(command.operator, command.comment or "the driver quit; resumable")
            return
        gate = state.gate
        if kind == "abort" and (gate is None or "abort" not in gate.options or self.stop):
            self.abort(command.operator, command.comment)
            return
        if self.stop:
            raise CommandRejected(f"the run is ending ({self.stop})")
        if kind == "pause":
            if state.status != "running":
                raise CommandRejected(f"the run is {state.status}; only a running run pauses")
            self.paused = True
            self.record.emit(ev.RunPaused, operator=command.operator, reason=command.comment)
            self.wake()
            return
        if kind == "resume":
            if state.status != "paused":
                raise CommandRejected(f"the run is {state.status}, not paused")
            self.record.emit(ev.RunResumed, operator=command.operator)
            self.paused = False
            self.wake()
            return
        self._decide(command)

    def _decide(self, command: ev.Command) -> None:
        """A decision at the open gate."""
        kind, gate = command.kind, self.record.state.gate
        if gate is None or self.decision is None:
            raise CommandRejected("no gate is open")
        if command.gate is not None and command.gate != gate.id:
            raise CommandRejected(f"gate {command.gate!r} is no longer open (now: {gate.id!r})")
        if kind not in gate.options:
            raise CommandRejected(f"this gate takes {', '.join(gate.options)}, not {kind}")
        if kind == "skip" and not command.comment.strip():
            raise CommandRejected("skipping needs a reason")
        twins = self._twins(command, gate.id)
        self.record.emit(
            ev.GateDecided,
            gate=gate.id,
            decision=kind,
            operator=command.operator,
            comment=command.comment,
        )
        if twins:  # said now, journalled: each twin is decided, as it opens, in its own event
            for twin in twins:
                self.twins[twin] = (command.operator, command.comment, gate.id)
            self.record.emit(
                ev.OperatorNote,
                operator=command.operator,
                text=f"approved {gate.id} with its twin gate(s) {', '.join(twins)}: each is "
                "approved as it opens, with the same comment",
            )
        if not self.decision.done():
            self.decision.set_result((kind, command.comment))
        if kind == "abort":
            self.abort(command.operator, command.comment, decided=True)

    def _twins(self, command: ev.Command, gate_id: str) -> list[str]:
        """The twins an approve names, each checked to be one (core/twins.py)."""
        if not command.twins:
            return []
        if command.kind != "approve":
            raise CommandRejected("only an approval answers twin gates together")
        decided = {g.id for g in self.record.state.gates if g.decision}
        known = {g.id for _, g in twins_of(self.record.plan, gate_id, decided)}
        if command.twins == ("all",):  # every twin still to be asked (`approve --twins`)
            return sorted(known, key=list(known).index)
        strangers = [t for t in command.twins if t not in known]
        if strangers:
            raise CommandRejected(
                f"not twins of {gate_id} still to be asked: {', '.join(strangers)}"
            )
        return list(dict.fromkeys(command.twins))

    def abort(self, operator: str, reason: str, decided: bool = False) -> None:
        """Abort: running commands are told to stop, nothing new starts, the open gate (if
        any) is decided `abort`."""
        if self.stop == "aborted" or self.lifecycle != RUNNING:
            return
        self.record.emit(ev.RunAborted, operator=operator, reason=reason)
        if self.record.state.gate is not None and not decided:
            self.record.emit(
                ev.GateDecided,
                gate=self.record.state.gate.id,
                decision="abort",
                operator=operator,
                comment=reason,
            )
        self.halt("aborted")
        self.stop_signal.abort()

    def leave_paused(self, operator: str, reason: str) -> None:
        """The driver leaves and the run stays resumable: running steps finish, nothing new
        starts, an open gate stays undecided (the next driver asks it again)."""
        if self.stop or self.lifecycle != RUNNING:
            return
        if self.record.state.status == "running":
            self.record.emit(ev.RunPaused, operator=operator, reason=reason)
        self.halt(RUN_PAUSED)

    def leave_now(self) -> None:
        """The driver leaves without waiting for the running steps: a durable job runs on on
        its node (the next driver follows it); any other command is stopped."""
        if self.stop == RUN_PAUSED:
            self.stop_signal.leave_running()

    # ---------------------------------------------------------------- control state

    def halt(self, mode: str) -> None:
        """End the run early: branches unwind at their next step, the open gate is released
        without a decision (unless one was journalled)."""
        assert mode in HALT_MODES
        if self.stop is None or mode == "aborted":
            self.stop = mode
        if self.decision is not None and not self.decision.done():
            self.decision.set_result(("halt", ""))
        self.wake()

    def fail(self, error: str) -> None:
        """The engine itself failed (a bug, or a journal it cannot write): say so once."""
        if self.stop == "error" and self.error:
            return
        self.error = error.splitlines()[0] if error else "engine error"
        self.halt("error")

    def wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    async def wait_runnable(self, phase: str) -> None:
        """Wait while the run is paused or a failure-budget gate holds the phase; raises
        Halted once the run is ending."""
        while not self.stop and (self.paused or self.holds.get(phase, 0) or self.outage_holds):
            await self._wakeup.wait()
        if self.stop:
            raise Halted

    async def outages_decided(self) -> None:
        """Wait until no outage gate is open (the run does not end with one undecided);
        raises Halted once the run is ending."""
        while not self.stop and self.outage_holds:
            await self._wakeup.wait()
        if self.stop:
            raise Halted

    def check(self) -> None:
        """Raise Halted when the run is ending."""
        if self.stop:
            raise Halted
