"""The engine: executes a plan through an executor, emits events, obeys operator commands.

It is the only thing that changes the world. It never draws and never waits on a UI: it emits
events (journalled before it acts on them) and accepts commands (`send`). Its parts, one idea
each: the record (events, journal, output: record.py), command intake (intake.py), gates
(gates.py), the step runner (steps.py), the scheduler of waves, phases, stages and lanes
(schedule.py), the status poller (poller.py); this module is the run's lifecycle:

    running    the plan is driven, with the output flusher and the status poller beside it
    finishing  the job directories cleaned, the method's clean-ups of a run that ended
               part-way, the end notification: each bounded in time (options.end_timeout)
    finished   RunFinished journalled, durable; nothing more is written, nothing accepted
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from rollgate.core import events as ev
from rollgate.core import methods
from rollgate.core.engine.gates import Gates
from rollgate.core.engine.intake import FINISHED, FINISHING, Intake
from rollgate.core.engine.options import (
    AUTO_OPERATOR,
    BEFORE_WINDOW,
    HALT_MODES,
    EngineOptions,
)
from rollgate.core.engine.poller import poll_status
from rollgate.core.engine.record import Halted, Record
from rollgate.core.engine.schedule import Scheduler
from rollgate.core.engine.steps import StepRunner
from rollgate.core.engine.watch import Watcher
from rollgate.core.executor import Executor, Stopped, StopSignal, TransportError, within
from rollgate.core.history import History
from rollgate.core.inventory import Inventory
from rollgate.core.journal import JournalWriter
from rollgate.core.methods import Cleanup
from rollgate.core.notify import end_text
from rollgate.core.plan import Plan, Step
from rollgate.core.state import RunState
from rollgate.core.words import RUN_COMPLETE, RUN_DEVIATIONS, run_word

__all__ = [
    "AUTO_OPERATOR",
    "BEFORE_WINDOW",
    "HALT_MODES",
    "Engine",
    "EngineOptions",
]


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
        self._options = options
        self.journal = journal
        self.clock = clock
        self.record = Record(
            plan,
            options.secrets,
            journal,
            history or (),
            clock=clock,
            monotonic=monotonic,
            on_lost=lambda error: self.intake.fail(error),
            run_id=options.run_id,
        )
        self.resumed = bool(self.record.history)
        self.record.state.gate = None  # as RunStarted will: the new driver asks open gates again
        self.intake = Intake(self.record)
        self.gates = Gates(self.record, self.intake, options)
        self.steps = StepRunner(
            plan, inventory, executor, options, self.record, self.intake, self.gates
        )
        self.scheduler = Scheduler(plan, self.record, self.intake, self.gates, self.steps)
        self.watcher = Watcher(
            plan,
            inventory,
            executor,
            self.record,
            self.intake,
            self.gates,
            options.watch_interval,
            options.watch_probe_timeout,
        )

    @property
    def options(self) -> EngineOptions:
        return self._options

    @options.setter
    def options(self, options: EngineOptions) -> None:
        """New options before the run starts (tests set a window or a pace); every part
        reads them."""
        self._options = self.gates.options = self.steps.options = options
        self.record.secrets = options.secrets

    # ---------------------------------------------------------------- what views read

    @property
    def state(self) -> RunState:
        return self.record.state

    @property
    def history(self) -> History:
        return self.record.history

    @property
    def finished(self) -> asyncio.Event:
        return self.record.finished

    @property
    def stopping(self) -> str | None:
        """Why the run is ending early (one of HALT_MODES), once it is; running steps may
        still be finishing."""
        return self.intake.stop

    def plan_step(self, step_id: str) -> Step:
        return self.scheduler._plan_steps[step_id]

    async def wait_for_event_after(self, count: int) -> None:
        """Wait until history holds more than `count` events or the run finished."""
        await self.record.wait_for_event_after(count)

    # ---------------------------------------------------------------- commands

    async def send(self, command: ev.Command) -> None:
        """Apply an operator command, durably; raises CommandRejected when it does not fit."""
        await self.intake.send(command)

    def abort(self, operator: str, reason: str) -> None:
        self.intake.abort(operator, reason)

    def leave_paused(self, operator: str, reason: str) -> None:
        self.intake.leave_paused(operator, reason)

    def leave_now(self) -> None:
        """After leave_paused: stop waiting for the running steps (durable jobs run on)."""
        self.intake.leave_now()

    # ---------------------------------------------------------------- the lifecycle

    async def run(self) -> str:
        """Drive the plan to the end and return the run's word (core/words.py). Returns only
        after every branch ended; RunFinished is always the last event."""
        options = self.options
        self.record.emit(
            ev.RunStarted,
            run_id=options.run_id,
            operator=options.operator,
            plan_digest=self.plan.digest,
            resumed=self.resumed,
            auto_approve=options.auto_approve,
            host=options.host,
        )
        if not self.resumed:
            for text in options.notes:
                self.record.emit(ev.OperatorNote, operator="rollgate", text=text)
        await self._drive()
        outcome = self._outcome()
        self.intake.lifecycle = FINISHING
        await self._finish(outcome)
        self.intake.lifecycle = FINISHED
        self.record.emit(ev.RunFinished, outcome=outcome, error=self.intake.error)
        with contextlib.suppress(Halted, TimeoutError):  # a journal that failed stays readable
            async with asyncio.timeout(options.end_timeout):
                await self.record.commit()
        if self.journal is not None and self.journal.lost:
            with contextlib.suppress(OSError):  # what the run recorded, from memory
                self.journal.recover(self.record.history)
        self.record.close()
        return outcome

    async def _drive(self) -> None:
        """The plan, with the output flusher and the status poller beside it; both end with
        it (on a flag, and cancelled), each of their awaits bounded."""
        done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as beside:
                beside.create_task(self._flush_output(done))
                beside.create_task(
                    poll_status(
                        self.executor,
                        self.inventory,
                        self.record,
                        self.options.status_interval,
                        done,
                    )
                )
                self.watcher.interval = self.options.watch_interval
                beside.create_task(self.watcher.run(done))
                try:
                    await self.scheduler.run(self.resumed)
                    await self.intake.outages_decided()  # a gate the watch opened last
                except Halted:
                    pass
                except Exception as exc:  # a bug: say so in the journal, never hang watchers
                    self.intake.fail(f"engine error: {type(exc).__name__}: {exc}")
                finally:
                    done.set()
        except* Exception as group:  # the flusher or the poller failed: a bug as well
            first = group.exceptions[0]
            self.intake.fail(f"engine error: {type(first).__name__}: {first}")

    async def _flush_output(self, done: asyncio.Event) -> None:
        """Buffered output becomes StepOutput events every flush interval, made durable."""
        while not done.is_set():
            try:
                await within(asyncio.sleep(self.options.flush_interval), None, done)
            except Stopped:
                return
            self.record.flush_output()
            with contextlib.suppress(Halted):  # the journal failed: the run is halting
                await self.record.commit()

    def _outcome(self) -> str:
        stop = self.intake.stop
        if stop == "error":
            return "failed"
        if stop:
            return stop
        outcome = run_word(s.status for s in self.state.steps.values())
        if outcome == "incomplete":  # every phase ran, yet steps are unsettled: a bug
            self.intake.fail("engine error: steps left unsettled")
            return "failed"
        if outcome == RUN_COMPLETE and self.state.outages:  # something stopped answering
            return RUN_DEVIATIONS
        return outcome

    async def _finish(self, outcome: str) -> None:
        """What the end of a run does before RunFinished, each part within end_timeout: the
        job directories removed from the nodes, the method's clean-ups of a run that ended
        part-way, the end told to the inventory's notify channels."""
        limit = self.options.end_timeout
        self.record.flush_output()
        for part, what in (
            (self.steps.clean_jobs(), "removing the job directories"),
            (self._method_cleanups(outcome), "the method's clean-ups"),
        ):
            try:
                await within(part, limit, None)
            except TimeoutError:
                self.record.emit(
                    ev.OperatorNote,
                    operator="rollgate",
                    text=f"the end of the run gave up {what} after {limit:g}s",
                )
        if not self.options.dry_run:  # told before RunFinished, which stays the last event
            self.gates.tell(
                *end_text(ev.RunFinished(seq=0, time=0, outcome=outcome, error=self.intake.error))
            )
        await self.gates.notifications_sent(limit)

    async def _method_cleanups(self, outcome: str) -> None:
        """A run that ends part-way: what its deployment method needs undone on each node
        (core/methods `Method.cleanups`), each run once and journalled."""
        if outcome not in ("aborted", "stopped", "failed") or self.options.dry_run:
            return
        nodes = {n.name: n for n in self.inventory.nodes}

        async def clean(cleanup: Cleanup) -> None:
            error = ""
            try:
                result = await self.executor.run(
                    nodes[cleanup.node],
                    cleanup.command,
                    on_output=lambda stream, line: None,
                    timeout=self.options.end_timeout,
                    job=None,
                    stop=self.intake.stop_signal,
                )
                if result.exit_status != 0:
                    error = result.error or f"exit status {result.exit_status}"
            except TransportError as exc:
                error = str(exc)
            self.record.emit(
                ev.CleanupDone, node=cleanup.node, what=cleanup.what, ok=not error, error=error
            )

        # a run aborted earlier has its stop signal set: the clean-ups get a fresh one, which
        # an abort while finishing sets again
        self.intake.stop_signal = StopSignal()
        wanted = methods.method(self.plan.method).cleanups(self.plan, self.state)
        async with asyncio.TaskGroup() as group:
            for cleanup in wanted:
                if cleanup.node in nodes:
                    group.create_task(clean(cleanup))
