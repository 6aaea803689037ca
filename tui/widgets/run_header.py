"""The header: the run on one line that drops what is least used first as the terminal
narrows (as k9s does: the run id, who is attached, the operator, the time elapsed; the state,
the window and the estimate are the last to go), and the nodes' counts on the second."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from rollgate.core.plan import Plan
from rollgate.core.state import RunState
from rollgate.core.words import GLYPHS


@dataclass(frozen=True)
class Piece:
    """A piece of the header; `keep`: the higher, the later it is dropped."""

    text: str
    keep: int
    style: str = ""


def fit(pieces: list[Piece], width: int) -> Text:
    """The pieces in their order, without the least kept ones until the rest fits `width`
    (what still does not fit is cut by the header's ellipsis)."""
    shown = [p for p in pieces if p.text]
    while len(shown) > 1 and sum(cell_len(p.text) for p in shown) > width:
        shown.remove(min(shown, key=lambda p: p.keep))
    return Text.assemble(*((p.text, p.style) for p in shown))


def span(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


@dataclass(frozen=True)
class HeaderView:
    """What the header says besides the state: the time, the window, the work left, who."""

    now: float
    window: tuple[float, float] | None
    left: float | None  # seconds of work left, as estimated
    operator: str
    read_only: bool
    attached: tuple[str, ...] = ()
    lost: bool = False  # the engine stopped answering before the run ended


class RunHeader(Static):
    DEFAULT_CSS = """
    RunHeader { height: 2; padding: 0 1; background: $panel; text-wrap: nowrap;
                text-overflow: ellipsis; }
    """

    def __init__(self) -> None:
        super().__init__(id="header")
        self._text = Text()

    def draw(self, plan: Plan, s: RunState, view: HeaderView) -> None:
        now = view.now
        elapsed = ""
        if s.started:
            secs = int((s.finished or now) - s.started)
            elapsed = f"  elapsed {secs // 3600:d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        window = ""
        if view.window is not None:
            start, end = view.window
            if now < start:
                window = f"  window opens in {span(start - now)}"
            else:
                window = f"  window left {span(end - now)}" if now < end else "  WINDOW OVER"
        estimate, late = "", ""
        left = view.left
        if left is not None and s.finished is None and s.started is not None:
            estimate = f"  ~{span(left)} of work left"
            if view.window is not None and now + left > view.window[1]:
                late = f" (past the window's end by {span(now + left - view.window[1])})"
        first = [
            Piece(f"{plan.cloud}", 60, "bold"),
            Piece(
                f"  {plan.source} -> {plan.target}" + (" skip-level" if plan.skip_level else ""), 50
            ),
            Piece(f"  run {s.run_id or '-'}", 10),
            Piece(f"  {GLYPHS.get(s.status, '')} {s.status}", 90, "bold"),
            Piece(elapsed, 40),
            Piece(window, 80),
            Piece(estimate, 75),
            Piece(late, 85, "bold red"),
            Piece(
                f"  driven by {s.operator or '?'}" + (f"@{s.host}" if s.host else "")
                if view.read_only
                else f"  operator {view.operator}",
                30,
            ),
            Piece(f"  {view.operator.upper()}" if view.read_only else "", 70, "bold"),
            Piece(f"  attached: {', '.join(view.attached)}" if len(view.attached) > 1 else "", 20),
            Piece(
                "  ENGINE LOST: it stopped without finishing; resume it" if view.lost else "",
                100,
                "bold red",
            ),
        ]
        width = max(20, (self.size.width or self.app.size.width) - 2)  # its padding
        text = fit(first, width)
        text.append("\n")
        counts = s.counts()
        text.append(" ".join(f"{GLYPHS.get(k, '')} {k} {v}" for k, v in sorted(counts.items())))
        if text != self._text:  # an idle console does no work
            self._text = text
            self.update(text, layout=False)  # two lines, always: no new layout
