"""The gate bar: the open gate's question, what a decision needs to know (the failed step, its
command, its last output), its choices and their keys; hidden while no gate is open."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from rollgate.core.state import GateState

GATE_SUMMARY_LINES = 8  # the gate bar stays readable on a 24-line terminal
COMPACT_GATE_LINES = 3

# each decision's key, as the bar shows it
KEYS = {
    "approve": "a approve",
    "reject": "j reject",
    "retry": "r retry",
    "skip": "s skip",
    "abort": "x abort",
    "rerun": "a re-run",
    "mark-done": "s mark done",
}


def gate_summary(summary: str, most: int = GATE_SUMMARY_LINES, room: int = 0) -> str:
    """The gate's detail for the gate bar in at most `most` lines (each cut to `room`
    columns when given). When it is longer, what a decision needs first: the failed step, its
    command, its last output line, then the rest from the end; the first line says how many
    are hidden and that node detail (d) has them all."""
    lines = summary.splitlines()
    if len(lines) > most:
        stripped = [line.lstrip() for line in lines]
        first = [i for i, t in enumerate(stripped) if t.startswith("✘")][:1]
        command = [i for i, t in enumerate(stripped) if t.startswith("command:")][:1]
        output = [i for i, t in enumerate(stripped) if t.startswith("|")][-1:]
        wanted = [*first, *command, *output, *reversed(range(len(lines)))]
        chosen = sorted(list(dict.fromkeys(wanted))[:most])
        hidden = len(lines) - len(chosen)
        lines = [lines[i] for i in chosen]
        lines[0] += f"  (+{hidden} lines: d)"
    if room:
        lines = [line if len(line) <= room else line[: room - 1] + "…" for line in lines]
    return "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True)
class GateView:
    """What the bar shows besides the gate: who may decide, where, and its helpers' keys."""

    read_only: bool
    compact: bool
    width: int
    twin_sites: tuple[str, ...] = ()  # the open gate's twins still to be asked
    failed_nodes: tuple[str, ...] = ()  # the nodes a failure gate asks about


class GateBar(Static):
    DEFAULT_CSS = """
    GateBar { height: auto; padding: 0 1; background: $warning 30%; border: tall $warning;
              display: none; }
    GateBar.open { display: block; }
    """

    def __init__(self) -> None:
        super().__init__(id="gate")

    def draw(self, gate: GateState | None, view: GateView) -> None:
        if gate is None:
            self.remove_class("open")
            return
        options = "   ".join(KEYS.get(o, o) for o in gate.options)
        choices = list(gate.choices)
        room = max(20, view.width - 6)
        if view.compact:  # one line each: the gate bar leaves room for the pipeline
            choices = [c if len(c) <= room else c[: room - 1] + "…" for c in choices]
        if view.twin_sites:
            options += f"   A approve + twin(s) at {', '.join(view.twin_sites)}"
        if view.failed_nodes:
            failed = view.failed_nodes
            more = f" (+{len(failed) - 1})" if len(failed) > 1 else ""
            options += f"   d detail of {failed[0]}{more}"
        self.update(
            Text.assemble(
                ("⏸ GATE ", "bold"),
                f"({gate.kind}) {gate.title}\n",
                gate_summary(gate.summary, COMPACT_GATE_LINES, room)
                if view.compact
                else gate_summary(gate.summary),
                "" if view.read_only else "".join(f"· {c}\n" for c in choices),
                ("" if view.read_only else options, "bold"),
            )
        )
        self.add_class("open")
