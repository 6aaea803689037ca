"""Headless runs: a rich live view in the terminal and gate prompts, COU-style but better."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core import events as ev
from core.engine import AUTO_OPERATOR, CommandRejected
from core.session import Session
from core.state import RunState

GLYPHS = {
    "pending": "·",
    "running": "▶",
    "working": "▶",
    "ok": "✔",
    "done": "✔",
    "warning": "!",
    "failed": "✘",
    "timed_out": "⏱",
    "unreachable": "⊘",
    "skipped": "↷",
    "interrupted": "↯",
    "stopped": "■",
    "aborted": "■",
    "complete": "✔",
}


def render(state: RunState) -> Group:
    plan = state.plan
    head = Text.assemble(
        (f"{plan.cloud} ", "bold"),
        f"{plan.source} -> {plan.target}",
        " (skip-level)" if plan.skip_level else "",
        f"  run {state.run_id}  ",
        (f"{state.status}", "bold yellow" if state.status == "paused" else "bold"),
    )
    phases = Table(box=None, show_header=False, pad_edge=False)
    for phase in plan.phases:
        status = state.phases.get(phase.id, "pending")
        done = sum(state.steps[s.id].done for s in phase.steps)
        phases.add_row(
            f"{GLYPHS.get(status, '?')} {status}",
            f"{phase.title} @ {phase.site}",
            f"{done}/{len(phase.steps)} steps",
        )
    sites = Table("site", "pending", "working", "done", "failed", box=None)
    for site in dict.fromkeys(n.site for n in state.nodes.values()):
        c = state.counts(site)
        sites.add_row(
            site,
            str(c.get("pending", 0)),
            str(c.get("working", 0)),
            str(c.get("done", 0)),
            str(c.get("failed", 0) + c.get("unreachable", 0)),
        )
    parts: list[Any] = [head, phases, sites]
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


def describe(event: ev.Event) -> str | None:
    """One log line for events worth a line in a terminal log."""
    match event:
        case ev.PhaseStarted(phase=p):
            return f"phase {p} started"
        case ev.PhaseFinished(phase=p, outcome=o):
            return f"phase {p} {o}"
        case ev.GateOpened(title=t, kind=k):
            return f"gate ({k}): {t}"
        case ev.GateDecided(decision=d, operator=o, comment=c):
            return f"gate decided: {d} by {o}" + (f" — {c}" if c else "")
        case ev.StepFinished(step=s, outcome=o, error=e) if o not in ("ok",):
            return f"step {s}: {o}" + (f" — {e}" if e else "")
        case ev.RunPaused(operator=o):
            return f"paused by {o}"
        case ev.RunResumed(operator=o):
            return f"resumed by {o}"
        case ev.RunAborted(operator=o, reason=r):
            return f"aborted by {o}" + (f" — {r}" if r else "")
        case ev.RunFinished(outcome=o):
            return f"run {o}"
    return None


class HeadlessRunner:
    def __init__(self, session: Session, console: Console | None = None):
        self.session = session
        self.engine = session.engine
        self.console = console or Console()
        self.interrupts = 0
        self._printed = len(session.engine.history)  # a resumed run's past is not news
        self.operator = session.engine.options.operator

    def _on_sigint(self) -> None:
        self.interrupts += 1
        if self.interrupts >= 2:
            self.engine._abort(self.operator, "second Ctrl-C")

    async def _ask(self, prompt: str) -> str | None:
        """Read one line without blocking the engine; None when there is no terminal."""
        if not sys.stdin or not sys.stdin.isatty():
            return None
        try:
            return (await asyncio.to_thread(self.console.input, prompt)).strip()
        except (EOFError, KeyboardInterrupt):
            return None

    async def _decide_gate(self, live: Live) -> None:
        gate = self.engine.state.gate
        assert gate is not None
        live.stop()
        self.console.print(Text(f"\n⏸ {gate.title}", style="bold yellow"))
        if gate.summary:
            self.console.print(f"  {gate.summary}")
        options = "/".join(gate.options)
        while self.engine.state.gate is gate:
            answer = await self._ask(f"  decision [{options}] (add a comment after a space): ")
            if answer is None:
                self.console.print(
                    "  no terminal to ask at this gate (use --auto-approve to "
                    "approve gates without asking); aborting the run"
                )
                await self.engine.send(
                    ev.Command("abort", self.operator, "no terminal to decide a gate")
                )
                break
            word, _, comment = answer.partition(" ")
            word = {"y": "approve", "yes": "approve", "n": "reject", "no": "reject"}.get(
                word.lower(), word.lower()
            )
            try:
                await self.engine.send(ev.Command(word, self.operator, comment.strip(), gate.id))
            except (CommandRejected, ValueError) as exc:
                self.console.print(f"  {exc}")
        live.start()

    async def _interrupt_menu(self, live: Live) -> None:
        live.stop()
        if self.engine.state.status == "running":
            await self.engine.send(ev.Command("pause", self.operator, "Ctrl-C"))
        self.console.print(
            "\nPaused: running steps finish, nothing new starts. Ctrl-C again aborts."
        )
        answer = await self._ask(
            "  [c]ontinue, [a]bort, or [q]uit leaving the run paused (resume later with --resume): "
        )
        if answer is None or answer.lower().startswith("a"):
            self.engine._abort(self.operator, "aborted after Ctrl-C")
        elif answer.lower().startswith("q"):
            self.engine._abort(self.operator, "operator quit; resume with --resume")
        elif self.engine.state.status == "paused":
            await self.engine.send(ev.Command("resume", self.operator))
        self.interrupts = 0
        live.start()

    def _print_new(self, live: Live) -> None:
        history = self.engine.history
        while self._printed < len(history):
            event = history[self._printed]
            self._printed += 1
            line = describe(event)
            if line:
                stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
                live.console.print(f"[dim]{stamp}[/dim] {line}", highlight=False)

    async def run(self) -> int:
        for notice in self.session.notices:
            self.console.print(f"[dim]{notice}[/dim]")
        if self.engine.options.auto_approve:
            self.console.print(
                f"--auto-approve: every approval gate is approved as "
                f"'{AUTO_OPERATOR}' and journalled"
            )
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        task = asyncio.create_task(self.engine.run())
        interactive = self.console.is_terminal
        with Live(
            render(self.engine.state),
            console=self.console,
            refresh_per_second=4,
            transient=not interactive,
            auto_refresh=interactive,
        ) as live:
            while not task.done():
                self._print_new(live)
                if self.interrupts == 1:
                    await self._interrupt_menu(live)
                elif self.engine.state.gate is not None:  # auto-approved gates never linger
                    await self._decide_gate(live)
                live.update(render(self.engine.state))
                await asyncio.wait({task}, timeout=0.1)
            self._print_new(live)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        outcome = task.result()
        self.console.print(render(self.engine.state))
        self.console.print(f"journal: {self.session.journal_path}")
        if outcome != "complete":
            self.console.print(
                f"resume with: rollgate run {self.session.inventory.file} "
                f"--resume {self.session.run_id}"
            )
        return 0 if outcome == "complete" else 1
