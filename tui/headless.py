"""The headless view: a rich live view of a run in the terminal, with gate prompts.

A view like the console: it reads the run's events through a `RunClient` (folding them with
the one reducer) and answers gates and signals with commands, never touching the engine.

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
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rollgate.core import events as ev
from rollgate.core.client import CommandRejected, RunClient
from rollgate.core.narrate import describe, exit_code
from rollgate.core.report import end_summary
from rollgate.core.state import RunState, apply
from rollgate.core.words import AUTO_OPERATOR, RUN_COMPLETE, RUN_DEVIATIONS, glyph

__all__ = ["HeadlessView", "render"]

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


@dataclass
class HeadlessView:
    """A run in the terminal: the live view, a log line per event worth one, and a prompt at
    each gate. `news_from` is the first sequence number to print (a resumed run's past is not
    news)."""

    client: RunClient
    operator: str
    journal_path: str
    resume_hint: str
    news_from: int = 1
    auto_approve: bool = False
    window: tuple[float, float] | None = None
    notices: list[str] = field(default_factory=list)
    console: Console = field(default_factory=lambda: Console(soft_wrap=True, emoji=False))

    def __post_init__(self) -> None:
        if not self.console.is_terminal:  # piped: one line per line, never wrapped
            self.console.width = 10_000
        self.state = RunState.initial(self.client.plan)
        self.dry_run = bool(self.client.header.get("dry_run"))
        self.interrupts = 0
        self.leaving = False  # this view asked the run to stop (quit or abort)
        self._interrupted = asyncio.Event()
        self._finished = asyncio.Event()  # the run's events ended
        self._gate_moved = asyncio.Event()  # an event opened, decided or closed a gate
        self._lines: list[Text] = []  # log lines not printed yet (none while a prompt waits)
        self._reader: LineReader | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def interactive(self) -> bool:
        return bool(sys.stdin) and sys.stdin.isatty()

    @property
    def stopping(self) -> bool:
        return self.leaving or self.state.finished is not None or self.state.status == "aborted"

    def say(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(text, style=style or ""), highlight=False)

    async def _send(self, kind: str, comment: str = "", *, operator: str = "",
                    gate: str | None = None) -> None:  # fmt: skip
        """A command to the run; a refusal is said, never raised."""
        if kind in ("quit", "abort"):
            self.leaving = True
        try:
            await self.client.send(ev.Command(kind, operator or self.operator, comment, gate))
        except CommandRejected as exc:
            if kind not in ("quit", "abort"):  # the run ending on its own is no news
                self.say(f"  {exc}")

    def _soon(self, kind: str, comment: str, operator: str = "") -> None:
        task = asyncio.ensure_future(self._send(kind, comment, operator=operator))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _on_signal(self, name: str) -> None:
        self.interrupts += 1
        if self.interrupts >= 2:
            self._soon("abort", f"second {name}")
            self._interrupted.set()
        elif not self.interactive or name != "Ctrl-C":
            # no one to ask: pause after the running steps and leave the run resumable
            signal_name = "SIGINT" if name == "Ctrl-C" else name
            self._soon(
                "quit",
                f"{name}: the driver stopped after the running steps; resumable",
                operator=f"signal:{signal_name} by {self.operator}",
            )
        else:
            self._interrupted.set()

    async def _follow(self) -> None:
        """Fold every event into the view's state; queue a line for each one worth it."""
        try:
            async for event in self.client.events(1):
                gate = self.state.gate
                apply(self.state, event)
                if self.state.gate is not gate:
                    self._gate_moved.set()
                if event.seq < self.news_from:
                    continue
                if self.dry_run and isinstance(event, ev.StepOutput):
                    self._lines.extend(Text(output) for output in event.lines)
                    continue
                line = describe(event, self.client.plan)
                if line:
                    stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
                    self._lines.append(Text.assemble((stamp, "dim"), " ", line))
        finally:
            self._finished.set()
            self._gate_moved.set()

    def _print_new(self, live: Live) -> None:
        lines, self._lines = self._lines, []
        for line in lines:
            live.console.print(line, highlight=False)

    async def _ask(self, prompt: str) -> str | None:
        """One line from the terminal without blocking the run; None when there is no
        terminal or input ended; "" when Ctrl-C interrupted the question (the typed line, if
        any, is kept for the next question)."""
        if not self.interactive:
            return None
        if self._reader is None:
            self._reader = LineReader(asyncio.get_running_loop())
        self.console.print(Text(prompt), end="")
        line = asyncio.ensure_future(self._reader.get())
        interrupted = asyncio.ensure_future(self._interrupted.wait())
        finished = asyncio.ensure_future(self._finished.wait())
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
        gate = self.state.gate
        assert gate is not None
        live.stop()
        self.say(f"\n⏸ {gate.title}", "bold yellow")
        for line in gate.summary.splitlines():
            self.say(f"  {line}")
        for choice in gate.choices:  # what each decision does, before it is taken
            self.say(f"  · {choice}")
        options = "/".join(gate.options)
        while self.state.gate is gate and not self.stopping:
            if self._interrupted.is_set():
                await self._interrupt_menu()
                continue
            answer = await self._ask(f"  decision [{options}] (add a comment after a space): ")
            if answer == "":
                continue
            if answer is None:
                if self.state.gate is not gate or self._finished.is_set():
                    break  # decided elsewhere while we asked
                self.say(
                    f"  no terminal to decide this {gate.kind} gate: the run stops here, paused "
                    "(running steps finish, nothing was terminated); decide it by resuming in "
                    "a terminal with the command below"
                )
                await self._send("quit", "no terminal to decide a gate")
                break
            word, _, comment = answer.partition(" ")
            word = {"y": "approve", "yes": "approve", "n": "reject", "no": "reject"}.get(
                word.lower(), word.lower()
            )
            if word not in ev.COMMAND_KINDS:
                self.say(f"  this gate takes {', '.join(gate.options)}, not {word}")
                continue
            await self._send(word, comment.strip(), gate=gate.id)
            await self._settle(gate)
        live.start()

    async def _settle(self, gate: object) -> None:
        """Wait (half a second at most) for the decision's event to come back, so the prompt is
        not asked twice for one gate."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                while self.state.gate is gate and not self._finished.is_set():
                    self._gate_moved.clear()
                    await self._gate_moved.wait()  # set by the follower

    async def _interrupt_menu(self) -> None:
        self._interrupted.clear()
        if self.state.status == "running":
            await self._send("pause", "Ctrl-C")
        self.say("\nPaused: running steps finish, nothing new starts. Ctrl-C again aborts.")
        answer = await self._ask(
            "  [c]ontinue, [a]bort, or [q]uit leaving the run paused (resume later with --resume): "
        )
        if self._finished.is_set() or self.interrupts >= 2:
            return
        gate = self.state.gate
        word, _, comment = (answer or "").partition(" ")
        if gate is not None and word.lower() in gate.options:
            # a decision typed at the gate before or after the Ctrl-C: go on and take it
            await self._send("resume")
            await self._send(word.lower(), comment.strip(), gate=gate.id)
        elif answer is None or answer.lower().startswith("q"):
            await self._send("quit", "the operator quit; resume with --resume")
        elif answer.lower().startswith("a"):
            await self._send("abort", "aborted after Ctrl-C")
        elif self.state.status == "paused":
            await self._send("resume")
        self.interrupts = 0

    async def run(self) -> int:
        """Follow the run to its end (or until this view leaves it); the run's exit code."""
        for notice in self.notices:
            self.say(notice, "dim")
        if self.auto_approve:
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
        follow = asyncio.create_task(self._follow())
        interactive = self.console.is_terminal
        try:
            with Live(
                render(self.state),
                console=self.console,
                refresh_per_second=4,
                transient=not interactive,
                auto_refresh=interactive,
            ) as live:
                while not follow.done():
                    self._print_new(live)
                    if self._interrupted.is_set() and self.interrupts == 1:
                        live.stop()
                        await self._interrupt_menu()
                        live.start()
                    elif self.state.gate is not None and not self.stopping:
                        await self._decide_gate(live)
                    live.update(render(self.state))
                    await asyncio.wait({follow}, timeout=0.1)
                self._print_new(live)
        finally:
            for signum in handled:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)
            if not follow.done():
                follow.cancel()
        follow.result()
        outcome = self.state.status  # the run's outcome once its RunFinished was folded
        self.console.print(render(self.state))
        self._print_not_upgraded()
        self.say(f"journal: {self.journal_path}")
        if outcome not in (RUN_COMPLETE, RUN_DEVIATIONS):
            self.say(f"resume with: {self.resume_hint}")
        return exit_code(outcome)

    def _print_not_upgraded(self) -> None:
        summary = end_summary(self.client.plan, self.state, self.window)
        for line in summary[2:]:  # the run's word and the node counts are in the view above
            self.say(line, "bold" if line.endswith("not upgraded:") else None)
