"""Headless runs: a rich live view in the terminal and gate prompts, COU-style but better.

Nothing here interprets Rich markup in text that comes from a run (command output, node names,
step titles, reasons): every such string is printed as a `Text`, so `[database]` shows as is
and `[/bold]` cannot break the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core import events as ev
from core.engine import AUTO_OPERATOR, CommandRejected
from core.plan import Plan
from core.report import end_summary
from core.session import Session
from core.state import RunState
from core.words import GLYPHS, RUN_COMPLETE, RUN_DEVIATIONS, glyph

__all__ = ["GLYPHS", "HeadlessRunner", "describe", "render"]

NODE_COLUMNS = ("pending", "working", "partial", "done", "skipped", "failed", "unreachable")


def render(state: RunState) -> Group:
    plan = state.plan
    head = Text.assemble(
        (f"{plan.cloud} ", "bold"),
        f"{plan.source} -> {plan.target}",
        " (skip-level)" if plan.skip_level else "",
        f"  run {state.run_id}  ",
        (f"{glyph(state.status)} {state.status}", "bold"),
    )
    phases = Table(box=None, show_header=False, pad_edge=False)
    for phase in plan.phases:
        status = state.phases.get(phase.id, "pending")
        done = sum(state.steps[s.id].done for s in phase.steps)
        phases.add_row(
            Text(f"{glyph(status)} {status}"),
            Text(f"{phase.title} @ {phase.site}"),
            Text(f"{done}/{len(phase.steps)} steps"),
        )
    sites = Table("site", *NODE_COLUMNS, "fenced", box=None)
    for site in dict.fromkeys(n.site for n in state.nodes.values()):
        c = state.counts(site)
        fenced = sum(1 for n in state.nodes.values() if n.site == site and n.disabled)
        sites.add_row(Text(site), *(str(c.get(k, 0)) for k in NODE_COLUMNS), str(fenced))
    parts: list[Any] = [head, phases, sites]
    if state.error:
        parts.append(Text(state.error, style="red"))
    running = state.running_steps[:8]
    if running:
        parts.append(
            Text("running: " + ", ".join(f"{s.node}:{s.id.rsplit('/', 1)[-1]}" for s in running))
        )
    for step in state.failed_steps[-5:]:
        parts.append(Text(f"✘ {step.id}: {step.status} {step.error}", style="red"))
    if state.gate is not None:
        parts.append(Text(f"⏸ gate: {state.gate.title}", style="bold yellow"))
    return Group(*parts)


_named: list[Any] = [None, ({}, {})]  # the last plan named, and its names


def _names(plan: Plan | None) -> tuple[dict[str, str], dict[str, str]]:
    """Step and phase ids -> what an operator reads (a step's title on its node; a phase's
    title at its site); empty without a plan. Built once per plan."""
    if plan is None:
        return {}, {}
    if _named[0] is not plan:
        steps = {
            s.id: s.title if s.node in s.title else f"{s.title} on {s.node}" for s in plan.steps
        }
        _named[:] = [plan, (steps, {p.id: f"{p.title} at {p.site}" for p in plan.phases})]
    found: tuple[dict[str, str], dict[str, str]] = _named[1]
    return found


def describe(event: ev.Event, plan: Plan | None = None) -> str | None:
    """One log line for events worth a line in a terminal log; with the plan, steps and
    phases by title, never by internal id."""
    steps, phases = _names(plan) if plan is not None and _wants_names(event) else ({}, {})
    match event:
        case ev.PhaseStarted(phase=p):
            return f"phase {phases.get(p, p)} started"
        case ev.PhaseFinished(phase=p, outcome=o):
            return f"phase {phases.get(p, p)}: {o}"
        case ev.GateOpened(title=t, kind=k):
            return f"gate ({k}): {t}"
        case ev.GateDecided(decision=d, operator=o, comment=c):
            return f"gate decided: {d} by {o}" + (f" — {c}" if c else "")
        case ev.StepFinished(step=s, outcome=o, error=e) if o not in ("ok",):
            return f"step {steps.get(s, s)}: {o}" + (f" — {e}" if e else "")
        case ev.RunPaused(operator=o, reason=r):
            return f"paused by {o}" + (f" — {r}" if r else "")
        case ev.RunResumed(operator=o):
            return f"resumed by {o}"
        case ev.RunAborted(operator=o, reason=r):
            return f"aborted by {o}" + (f" — {r}" if r else "")
        case ev.RunFinished(outcome=o, error=e):
            return f"run {o}" + (f" — {e}" if e else "")
        case ev.BackupPulled(node=n, remote=r, local=loc, size=z, sha256=h):
            return f"backup {r} of {n} copied to {loc} ({z} bytes, sha256 {h[:16]}…)"
        case ev.NotificationFailed(channel=c, about=a, error=e):
            return f"notification ({a}) by {c} failed: {e}; the run goes on"
        case ev.RestartsAllowed(node=n, ok=True):
            return f"package restarts allowed again on {n} (policy-rc.d removed)"
        case ev.RestartsAllowed(node=n, error=e):
            return f"package restarts still blocked on {n}: {e}"
    return None


def _wants_names(event: ev.Event) -> bool:
    return isinstance(event, ev.PhaseStarted | ev.PhaseFinished) or (
        isinstance(event, ev.StepFinished) and event.outcome != "ok"
    )


class LineReader:
    """Lines typed on standard input, read by one thread for the whole run, so a line typed
    while something else happens (a Ctrl-C menu, a gate closing) waits for the next question
    instead of being lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._started = False

    def _read(self) -> None:
        while True:
            try:
                line = sys.stdin.readline()
            except (OSError, ValueError):
                line = ""
            self.loop.call_soon_threadsafe(
                self.lines.put_nowait, line.rstrip("\n") if line else None
            )
            if not line:
                return

    async def get(self) -> str | None:
        """The next line; None at end of input."""
        if not self._started:
            self._started = True
            threading.Thread(target=self._read, name="rollgate-stdin", daemon=True).start()
        return await self.lines.get()


class HeadlessRunner:
    def __init__(self, session: Session, console: Console | None = None):
        self.session = session
        self.engine = session.engine
        self.console = console or Console(soft_wrap=True)
        if not self.console.is_terminal:  # piped: one line per line, never wrapped
            self.console.width = 10_000
        self.interrupts = 0
        self._interrupted = asyncio.Event()
        self._printed = len(session.engine.history)  # a resumed run's past is not news
        self.operator = session.engine.options.operator
        self.dry_run = bool(session.header.get("dry_run"))
        self._reader: LineReader | None = None

    @property
    def interactive(self) -> bool:
        return bool(sys.stdin) and sys.stdin.isatty()

    def say(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(text, style=style or ""), highlight=False)

    def _on_signal(self, name: str) -> None:
        self.interrupts += 1
        if self.interrupts >= 2:
            self.engine.abort(self.operator, f"second {name}")
            self._interrupted.set()
        elif not self.interactive or name != "Ctrl-C":
            # no one to ask: pause after the running steps and leave the run resumable
            signal_name = "SIGINT" if name == "Ctrl-C" else name
            self.engine.leave_paused(
                f"signal:{signal_name} by {self.operator}",
                f"{name}: the driver stopped after the running steps; resumable",
            )
        else:
            self._interrupted.set()

    async def _ask(self, prompt: str) -> str | None:
        """One line from the terminal without blocking the engine; None when there is no
        terminal or input ended; "" when Ctrl-C interrupted the question (the typed line, if
        any, is kept for the next question)."""
        if not self.interactive:
            return None
        if self._reader is None:
            self._reader = LineReader(asyncio.get_running_loop())
        self.console.print(Text(prompt), end="")
        line = asyncio.ensure_future(self._reader.get())
        interrupted = asyncio.ensure_future(self._interrupted.wait())
        finished = asyncio.ensure_future(self.engine.finished.wait())
        try:
            await asyncio.wait({line, interrupted, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
            finished.cancel()
        if line.done():
            answer = line.result()
            return None if answer is None else answer.strip()
        line.cancel()  # the reader keeps the line for the next question
        self.console.print()
        return ""

    async def _decide_gate(self, live: Live) -> None:
        gate = self.engine.state.gate
        assert gate is not None
        live.stop()
        self.say(f"\n⏸ {gate.title}", "bold yellow")
        for line in gate.summary.splitlines():
            self.say(f"  {line}")
        for choice in gate.choices:  # what each decision does, before it is taken
            self.say(f"  · {choice}")
        options = "/".join(gate.options)
        while self.engine.state.gate is gate and not self.engine.stopping:
            if self._interrupted.is_set():
                await self._interrupt_menu()
                continue
            answer = await self._ask(f"  decision [{options}] (add a comment after a space): ")
            if answer == "":
                continue
            if answer is None:
                self.say(
                    f"  no terminal to decide this {gate.kind} gate: the run stops here, paused "
                    "(running steps finish, nothing was terminated); decide it by resuming in "
                    "a terminal with the command below"
                )
                self.engine.leave_paused(self.operator, "no terminal to decide a gate")
                break
            word, _, comment = answer.partition(" ")
            word = {"y": "approve", "yes": "approve", "n": "reject", "no": "reject"}.get(
                word.lower(), word.lower()
            )
            try:
                await self.engine.send(ev.Command(word, self.operator, comment.strip(), gate.id))
            except (CommandRejected, ValueError) as exc:
                self.say(f"  {exc}")
        live.start()

    async def _interrupt_menu(self) -> None:
        self._interrupted.clear()
        if self.engine.state.status == "running":
            with contextlib.suppress(CommandRejected):
                await self.engine.send(ev.Command("pause", self.operator, "Ctrl-C"))
        self.say("\nPaused: running steps finish, nothing new starts. Ctrl-C again aborts.")
        answer = await self._ask(
            "  [c]ontinue, [a]bort, or [q]uit leaving the run paused (resume later with --resume): "
        )
        if self.engine.finished.is_set() or self.interrupts >= 2:
            return
        gate = self.engine.state.gate
        word, _, comment = (answer or "").partition(" ")
        if gate is not None and word.lower() in gate.options:
            # a decision typed at the gate before or after the Ctrl-C: go on and take it
            await self.engine.send(ev.Command("resume", self.operator))
            with contextlib.suppress(CommandRejected):
                await self.engine.send(
                    ev.Command(word.lower(), self.operator, comment.strip(), gate.id)
                )
        elif answer is None or answer.lower().startswith("q"):
            self.engine.leave_paused(self.operator, "the operator quit; resume with --resume")
        elif answer.lower().startswith("a"):
            self.engine.abort(self.operator, "aborted after Ctrl-C")
        elif self.engine.state.status == "paused":
            await self.engine.send(ev.Command("resume", self.operator))
        self.interrupts = 0

    def _print_new(self, live: Live) -> None:
        history = self.engine.history
        while self._printed < len(history):
            event = history[self._printed]
            self._printed += 1
            if self.dry_run and isinstance(event, ev.StepOutput):
                for output in event.lines:
                    live.console.print(Text(output), highlight=False)
                continue
            line = describe(event, self.engine.plan)
            if line:
                stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
                live.console.print(Text.assemble((stamp, "dim"), " ", line), highlight=False)

    async def run(self) -> int:
        for notice in self.session.notices:
            self.say(notice, "dim")
        if self.engine.options.auto_approve:
            self.say(
                f"--auto-approve: every approval gate is approved as "
                f"'{AUTO_OPERATOR}' and journalled"
            )
        loop = asyncio.get_running_loop()
        handled = []
        for signum, name in (
            (signal.SIGINT, "Ctrl-C"),
            (signal.SIGTERM, "SIGTERM"),
            (signal.SIGHUP, "SIGHUP"),
        ):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, name)
                handled.append(signum)
        task = asyncio.create_task(self.engine.run())
        interactive = self.console.is_terminal
        try:
            with Live(
                render(self.engine.state),
                console=self.console,
                refresh_per_second=4,
                transient=not interactive,
                auto_refresh=interactive,
            ) as live:
                while not task.done():
                    self._print_new(live)
                    if self._interrupted.is_set() and self.interrupts == 1:
                        live.stop()
                        await self._interrupt_menu()
                        live.start()
                    elif self.engine.state.gate is not None and not self.engine.stopping:
                        await self._decide_gate(live)
                    live.update(render(self.engine.state))
                    await asyncio.wait({task}, timeout=0.1)
                self._print_new(live)
        finally:
            for signum in handled:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)
        outcome = task.result()
        self.console.print(render(self.engine.state))
        self._print_not_upgraded()
        self.say(f"journal: {self.session.journal_path}")
        if outcome not in (RUN_COMPLETE, RUN_DEVIATIONS):
            self.say(
                f"resume with: rollgate run {self.session.inventory.file} "
                f"--resume {self.session.run_id}"
            )
        return exit_code(outcome)

    def _print_not_upgraded(self) -> None:
        window = self.session.window
        summary = end_summary(
            self.engine.plan,
            self.engine.state,
            (window.start, window.end) if window is not None else None,
        )
        for line in summary[2:]:  # the run's word and the node counts are in the view above
            self.say(line, "bold" if line.endswith("not upgraded:") else None)


def exit_code(outcome: str) -> int:
    """0 complete, 3 complete with deviations (skipped steps: not every node was upgraded),
    1 anything else (failed, stopped, aborted, paused)."""
    return {RUN_COMPLETE: 0, RUN_DEVIATIONS: 3}.get(outcome, 1)
