"""The log pane: every command, its output and what the run said, a line each; while it
follows, a resize keeps its end in view."""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.widgets import Log

LOG_LINES = 5000


class RunLog(Log):
    DEFAULT_CSS = """
    RunLog { height: 30%; border: round $secondary; }
    RunLog:focus { border: double $accent; }
    """

    def __init__(self) -> None:
        super().__init__(id="log", max_lines=LOG_LINES, highlight=False)
        self.following = True

    def on_resize(self, event: events.Resize) -> None:
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False)

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        """New lines' width, measured here on the loop: Textual's Log measures it in a thread
        that calls back into the app, which raises NoActiveAppError when the console closes
        meanwhile (seen at the end of a run)."""
        if lines:
            width = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, width)
