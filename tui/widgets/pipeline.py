"""The pipeline: a row per phase (state, its gate, phase, site, steps done); the phase at work
stays in view; moving the cursor says PhaseChosen."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from rollgate.core.plan import Plan
from rollgate.core.state import RunState
from rollgate.core.words import GLYPHS, WORDS

# a phase gate in the pipeline: not asked yet, or how it was decided
GATE_WORDS = {"approve": "✔ approved", "reject": "■ rejected", "": "⏸ ahead"}


class PipelineTable(DataTable[Text]):
    """Drawn cell by cell, only where a phase's words changed."""

    DEFAULT_CSS = """
    PipelineTable { height: 45%; border: round $primary; }
    PipelineTable:focus { border: double $accent; }
    """

    @dataclass
    class PhaseChosen(Message):
        """The cursor moved to a phase: the steps table shows it."""

        phase: str | None

    def __init__(self) -> None:
        super().__init__(id="pipeline", cursor_type="row")
        self._cells: dict[str, tuple[str, str, str]] = {}
        self._sizes: dict[str, int] = {}
        self._plan: Plan | None = None
        self._at_work: int | None = None  # the row of the phase at work

    def build(self, plan: Plan) -> None:
        self._plan = plan
        self._sizes = {p.id: len(p.steps) for p in plan.phases}
        # the state and gate columns are as wide as their longest words: never cut
        self.add_column("state", width=max(len(w) for w in WORDS["phase"]) + 2)
        self.add_column("gate", width=len("✔ approved"))
        self.add_columns("phase", "site")
        most = max(self._sizes.values(), default=0)
        self.add_column("steps", width=max(5, 2 * len(str(most)) + 1))  # "84/120" whole
        for phase in plan.phases:
            self.add_row(
                *map(
                    Text,
                    (
                        "· pending",
                        "⏸ ahead" if phase.gate else "",
                        phase.title.split(" (")[0],  # "Compute": the steps pane names it whole
                        phase.site,
                        f"0/{len(phase.steps)}",
                    ),
                ),
                key=phase.id,
            )
        self.border_title = "pipeline"

    def forget(self) -> None:
        """Draw every cell again at the next frame (a new state: replay's seek)."""
        self._cells.clear()

    def draw(self, state: RunState) -> None:
        assert self._plan is not None
        columns = self.ordered_columns
        status_column, gate_column, steps_column = columns[0].key, columns[1].key, columns[4].key
        decided = {g.id: g.decision for g in state.gates}
        open_gate = state.gate.id if state.gate is not None else None
        for phase in self._plan.phases:
            status = state.phases.get(phase.id, "pending")
            gate = ""
            if phase.gate is not None:
                gate = (
                    "▶ open"
                    if phase.gate.id == open_gate
                    else GATE_WORDS.get(decided.get(phase.gate.id) or "", "⏸ ahead")
                )
            cells = (
                f"{GLYPHS.get(status, '?')} {status}",
                f"{state.phase_done.get(phase.id, 0)}/{self._sizes[phase.id]}",
                gate,
            )
            if self._cells.get(phase.id) != cells:
                self._cells[phase.id] = cells
                self.update_cell(phase.id, status_column, Text(cells[0]))
                self.update_cell(phase.id, steps_column, Text(cells[1]))
                self.update_cell(phase.id, gate_column, Text(cells[2]))
        running = state.current_phases
        if running and not self.has_focus:  # the phase at work stays in view (80x24, 60 rows)
            row = self.get_row_index(running[0])
            if self.cursor_row != row:
                self.move_cursor(row=row, animate=False)
            if row != self._at_work:  # a new phase at work (a resize also re-places it)
                self._at_work = row
                # once laid out: before, its height is not known and any row looks out of view
                self.call_after_refresh(self._keep_in_view)

    def _keep_in_view(self) -> None:
        """The phase at work one row below the top (the one before it above), whatever the
        table's height was before: the same view for the same run, at any moment."""
        row = self._at_work
        if row is None or self.has_focus:
            return
        visible = self.scrollable_content_region.height - 1  # less its header
        if visible <= 0:
            return
        wanted = 0 if self.row_count <= visible else max(0, min(row - 1, self.row_count - visible))
        if self.scroll_y != wanted:
            self.scroll_to(y=wanted, animate=False)

    def on_resize(self) -> None:
        self.call_after_refresh(self._keep_in_view)

    def selected(self, state: RunState) -> str | None:
        """The phase the steps table shows: the one at work, unless the operator moved here."""
        if self.row_count == 0:
            return None
        running = state.current_phases
        if running and not self.has_focus:
            return running[0]
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.PhaseChosen(str(event.row_key.value) if event.row_key else None))
