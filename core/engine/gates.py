"""Gates: the engine stops and asks. One gate is open at a time; --auto-approve answers the
gates the plan puts in (never one that reports something went wrong); a gate a person must
answer is told to the inventory's notify channels. The wording of each kind of gate (what
failed and what each choice does) is here too."""

from __future__ import annotations

import asyncio
import contextlib

from rollgate.core import events as ev
from rollgate.core.durations import span_words
from rollgate.core.engine.intake import Intake
from rollgate.core.engine.options import AUTO_OPERATOR, PLAN_GATE_KINDS, EngineOptions
from rollgate.core.engine.record import Halted, Record
from rollgate.core.estimate import remaining_seconds
from rollgate.core.notify import gate_text
from rollgate.core.plan import Gate, Phase, Step
from rollgate.core.recipes import fill_runtime
from rollgate.core.state import RunState
from rollgate.core.words import STEP_OK

Decision = tuple[str, str]  # (what was decided, the comment or reason)


def on_node(step: Step) -> str:
    """The step's title, naming its node once."""
    return step.title if step.node in step.title else f"{step.title} on {step.node}"


def runtime(command: str | None, run_id: str) -> str | None:
    """A command with the values only the run knows: its id (backup names)."""
    if command is None or "{{" not in command:
        return command
    return fill_runtime(command, {"run_id": run_id})


class Gates:
    def __init__(self, record: Record, intake: Intake, options: EngineOptions):
        self.record = record
        self.intake = intake
        self.options = options
        self._lock = asyncio.Lock()  # one gate open at a time
        self._window_lock = asyncio.Lock()  # one WINDOW OVER question for sites at once
        self._notify_lock = asyncio.Lock()
        self._notifications: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> RunState:
        return self.record.state

    async def ask(
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
    ) -> Decision:
        """Open a gate and wait for its decision. `automatic`: --auto-approve may answer it
        (never for a gate that reports something went wrong). Raises Halted when the run
        ends instead (an abort, a rejected plan gate, the driver leaving)."""
        async with self._lock:
            self.intake.check()
            if kind in PLAN_GATE_KINDS and self.state.approved(gate_id):
                return ("approve", "")
            opened = self.record.emit(
                ev.GateOpened,
                gate=gate_id,
                kind=kind,
                title=title,
                summary=summary,
                options=options,
                step=step,
                choices=choices or plain_choices(kind, options),
            )
            self.intake.decision = asyncio.get_running_loop().create_future()
            # --auto-approve answers in the same breath, before anyone watching sees it open
            auto = self.options.auto_approve and automatic
            twin = self.intake.twins.pop(gate_id, None)
            if twin is not None and "approve" in options:  # answered with its twin, by name
                operator, comment, first = twin
                self.intake.accept(
                    ev.Command(
                        "approve", operator, f"{comment} (with its twin {first})".strip(), gate_id
                    )
                )
            elif auto and "approve" in options:
                self.intake.accept(
                    ev.Command(
                        "approve", AUTO_OPERATOR, "approved automatically (--auto-approve)", gate_id
                    )
                )
            elif auto and "rerun" in options:
                self.intake.accept(
                    ev.Command(
                        "rerun", AUTO_OPERATOR, "re-run automatically (--auto-approve)", gate_id
                    )
                )
            else:  # a person must decide: tell whoever the inventory says should hear
                assert isinstance(opened, ev.GateOpened)
                self.tell(*gate_text(opened))
            await self.record.commit()
            decision = await self.intake.decision
            self.intake.decision = None
        if decision[0] in ("abort", "halt") or self.intake.stop:
            raise Halted
        if decision[0] == "reject" and kind in PLAN_GATE_KINDS:
            self.intake.halt("stopped")
            raise Halted
        return decision

    async def plan_gate(self, gate: Gate | None, summary: str = "") -> None:
        if gate is not None:
            await self.ask(gate.id, gate.kind, gate.title, summary=summary)

    # ---------------------------------------------------------------- notifications

    def tell(self, what: str, text: str) -> None:
        """Notify (inventory `notify:`) in the background; a failure is journalled, and the
        run goes on."""
        notifier = self.options.notifier
        if notifier is None:
            return

        async def send() -> None:
            async with self._notify_lock:  # told in the order they happened (the lock is FIFO)
                failures = await notifier.send(what, text)
            for channel, error in failures:
                if not self.record.closed:
                    self.record.emit(
                        ev.NotificationFailed, channel=channel, about=what, error=error
                    )

        task = asyncio.get_running_loop().create_task(send())
        self._notifications.add(task)
        task.add_done_callback(self._notifications.discard)

    async def notifications_sent(self, timeout: float) -> None:
        """Let the notifications under way finish (each has its own timeout), for at most
        `timeout` seconds; what is still sending then is cancelled."""
        pending = set(self._notifications)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await asyncio.wait(late)

    # ---------------------------------------------------------------- what gates say

    def summary_before(self, what: str) -> str:
        counts = self.state.step_counts()
        done = sum(counts.get(k, 0) for k in STEP_OK)
        parts = [f"done so far: {done}/{len(self.state.steps)} steps"]
        for word in ("skipped", "interrupted"):
            if counts.get(word):
                parts.append(f"{counts[word]} {word}")
        parts.append(f"{self.state.failures_now} failed")
        parts.append(f"{counts.get('warning', 0)} warnings acknowledged")
        return ", ".join(parts) + f"; next: {what}"

    def estimate_past_window(self) -> str:
        """At a phase gate (a safe point, between phases): when the estimate of the work left
        runs past the window's end, say so ("" otherwise)."""
        window = self.options.window
        now = self.record.clock()
        left = remaining_seconds(self.state, now, self.options.past_pace)
        if window is None or left is None or now + left <= window.end:
            return ""
        over = now + left - window.end
        return (
            f"\nESTIMATE: about {span_words(left)} of work left, {span_words(over)} past the "
            "window's end: reject stops here, between phases, resumable in the next window"
        )

    async def failure(self, step: Step, why: str, skipped: list[Step] | None = None) -> Decision:
        state = self.state.steps[step.id]
        return await self.ask(
            f"gate:failure:{step.id}:{state.attempts}",
            "failure",
            f"{why}: {on_node(step)} ended {state.status}"
            f" ({state.error or 'no output'}); retry, skip with a reason, or abort?",
            summary=self.failure_detail([step]),
            options=("retry", "skip", "abort"),
            step=step.id,
            choices=(
                f"retry: run '{step.title}' on {step.node} again (attempt {state.attempts + 1})",
                self.skip_choice(step.node, skipped or [step]),
                self.abort_choice(step.site if _undoable(step) else ""),
            ),
        )

    def failure_detail(self, steps: list[Step]) -> str:
        """What failed, for the gate itself: each step's title and node, its command, its exit
        status or error, and the last lines it printed."""
        lines: list[str] = []
        for step in steps[:5]:
            state = self.state.steps[step.id]
            lines.append(f"✘ {on_node(step)}: {state.status}")
            if step.command:
                lines.append(f"  command: {runtime(step.command, self.options.run_id)}")
            if state.exit_status is not None:
                lines.append(f"  exit status {state.exit_status}")
            if state.error and state.error != f"exit status {state.exit_status}":
                lines.append(f"  {state.error}")
            lines += [f"  | {line}" for line in list(state.tail)[-5:]]
        if len(steps) > 5:
            lines.append(f"... and {len(steps) - 5} more failed steps")
        return "\n".join(lines)

    def skip_choice(self, node: str, skipped: list[Step]) -> str:
        titles = [s.title for s in skipped]
        listed = "; ".join(titles[:4]) + (
            f"; and {len(titles) - 4} more" if len(titles) > 4 else ""
        )
        fence = [s.title for s in skipped[4:] if s.action == "enable-compute"]
        if fence:  # what decides whether the node stays out of the scheduler
            listed += f", among them {fence[0]}"
        fenced = self.state.nodes[node].disabled
        left = (
            "it stays disabled in the scheduler and not upgraded"
            if fenced
            else "it is left as it is now, not upgraded"
        )
        return f"skip (with a reason): {len(titles)} step(s) of {node} not run ({listed}); {left}"

    @property
    def resume_command(self) -> str:
        return (
            self.options.resume_command or f"rollgate run INVENTORY --resume {self.options.run_id}"
        )

    def abort_choice(self, site: str = "") -> str:
        """What abort does; with `site`, the way back from there too (core/rollback.py)."""
        back = (
            f", or take {site} back to the release it ran: `rollgate rollback "
            f"{self.options.run_id} --site {site}`"
            if site
            else ""
        )
        return (
            "abort: terminate every running command and stop the run; what is done stays "
            f"done; resume it later with `{self.resume_command}`" + back
        )

    async def warning(self, step: Step, status: int | None, why: str = "") -> Decision:
        # the check's own table, line by line (an upgrade-check table is a dozen lines)
        tail = "\n".join(list(self.state.steps[step.id].tail)[-14:])
        return await self.ask(
            f"gate:warning:{step.id}:{self.state.steps[step.id].attempts}",
            "warning",
            step.args.get("warning")
            or (f"{on_node(step)}: {why}" if why else "")
            or f"{on_node(step)} reported a warning (exit {status}): acknowledge and "
            "go on, or reject?",
            summary=tail,
            step=step.id,
        )

    # ---------------------------------------------------------------- the window

    async def window_start(self, *, prepared: bool = False) -> None:
        """Outside the maintenance window the upgrade starts only when an operator says so at
        a gate (--auto-approve never does), or --outside-window said so, journalled. Phases
        that prepare (`prepared`: they ran already) are not held back by the window."""
        window = self.options.window
        reason = window.outside(self.record.clock()) if window is not None else ""
        if not reason:
            return
        what = "the upgrade (the preparation before it is done)" if prepared else "the run"
        if self.options.outside_window:
            self.record.emit(
                ev.OperatorNote,
                operator=self.options.operator,
                text=f"started outside the window with --outside-window: {reason}",
            )
            return
        await self.ask(
            f"gate:window:start:{self.record.seq}",
            "window",
            f"{reason}: start {what} outside it?",
            automatic=False,
            choices=(
                "approve: start now, outside the window (journalled with your name)",
                "reject: start nothing more; the run can be resumed inside the window",
            ),
        )

    async def window_over(self, phase: Phase) -> None:
        """Past the window's end no new phase starts until an operator approves going on
        (reading the cloud against the inventory changes nothing: it is not asked)."""
        window = self.options.window
        if window is None or self.record.clock() <= window.end or phase.tier == "scope":
            return
        if self._past_window_approved():
            return  # approved once for the rest of the run
        async with self._window_lock:  # sites run at once: one question
            if self._past_window_approved():
                return
            await self.ask(
                f"gate:window:past:{self.record.seq}",
                "window",
                f"WINDOW OVER: {window.outside(self.record.clock())}; start {phase.title} at "
                f"{phase.site}, and the phases after it, past the window's end?",
                automatic=False,
                summary=self.summary_before(f"{phase.title} at {phase.site}"),
                choices=(
                    "approve: go on past the window's end (journalled with your name)",
                    "reject: start no new phase; running steps finish; resume later",
                ),
            )

    def _past_window_approved(self) -> bool:
        return any(
            g.kind == "window" and "past" in g.id and g.decision == "approve"
            for g in self.state.gates
        )


def _undoable(step: Step) -> bool:
    """A step of a phase `rollgate rollback` can undo (its id: SITE/TIER/...)."""
    from rollgate.core.rollback import UNDOABLE

    return step.id.split("/")[1] in UNDOABLE if step.id.count("/") >= 2 else False


def plain_choices(kind: str, options: tuple[str, ...]) -> tuple[str, ...]:
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
