"""The steps of the selected phase: what runs and failed first, then the next and the latest,
at most STEP_ROWS rows, changed cell by cell; enter on a step says StepChosen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable

from rollgate.core.plan import Plan, Step
from rollgate.core.state import RunState
from rollgate.core.words import GLYPHS
from rollgate.tui.phase_rows import PhaseRows

STEP_ROWS = 120  # rows in the steps table; a big phase has thousands of steps


class StepsTable(DataTable[Text]):
    DEFAULT_CSS = """
    StepsTable { height: 55%; border: round $primary; }
    StepsTable:focus { border: double $accent; }
    """

    @dataclass
    class StepChosen(Message):
        """Enter on a step: its exact command and how it went are asked for."""

        step: Step

    def __init__(self) -> None:
        super().__init__(id="steps", cursor_type="row")
        self.shown: list[Step] = []  # the rows, in order
        self.touched: set[str] = set()  # steps events changed since the last frame
        self._rows: Sequence[tuple[str, ...]] = []
        self._groups: dict[str, PhaseRows] = {}  # each phase's rows, once shown
        self._of: str | None = None  # the phase shown
        self._plan: Plan | None = None

    def build(self, plan: Plan) -> None:
        self._plan = plan
        self._phases = {p.id: p for p in plan.phases}
        self.add_columns("state", "step", "node", "try", "took")
        self.border_title = "steps of the selected phase"

    def forget(self) -> None:
        """A new state (replay's seek): every phase's rows are made again when shown."""
        self._groups.clear()
        self._of = None

    def draw(self, state: RunState, phase_id: str | None) -> None:
        touched, self.touched = self.touched, set()
        steps = state.steps
        changed = {steps[step].phase for step in touched if step in steps}
        for touched_phase in changed & self._groups.keys():
            self._groups[touched_phase].update(touched, steps)
        if phase_id is None:
            return
        if phase_id not in self._groups:
            self._groups[phase_id] = PhaseRows(self._phases[phase_id].steps, steps)
        elif phase_id == self._of and phase_id not in changed:
            return  # nothing in it changed since the last frame
        self._of = phase_id
        phase = self._phases[phase_id]
        grouped = self._groups[phase_id]
        self.shown = grouped.shown(STEP_ROWS)  # row i is this step (enter: detail)
        rows = [
            (
                f"{GLYPHS.get(st.status, '?')} {st.status}",
                step.title[:60],
                step.node,
                str(st.attempts or ""),
                f"{st.duration:.1f}s" if st.duration else "",
            )
            for step, st in ((step, steps[step.id]) for step in self.shown)
        ]
        if rows != self._rows:
            self._update_rows(self._rows, rows)
            self._rows = rows
        remaining, average, total = grouped.left, grouped.average_duration, len(grouped.steps)
        title = (
            f"{phase.title} @ {phase.site}: {remaining} steps left"
            + (f", about {remaining * average:.0f}s" if average else "")
            + (f" (showing {len(rows)} of {total})" if len(rows) < total else "")
        )
        if self.border_title != title:
            self.border_title = title

    def _update_rows(self, old: Sequence[tuple[str, ...]], new: Sequence[tuple[str, ...]]) -> None:
        """Change only the cells that differ: clearing and refilling a table makes Textual
        lay out the whole screen again, which costs a frame at thousands of nodes."""
        for row, (before, after) in enumerate(zip(old, new, strict=False)):
            if before != after:
                for column, (a, b) in enumerate(zip(before, after, strict=True)):
                    if a != b:
                        self.update_cell_at(Coordinate(row, column), Text(b), update_width=False)
        if len(new) > len(old):
            # Text, not str: a str cell is parsed as markup every time it is rendered
            self.add_rows([tuple(map(Text, row)) for row in new[len(old) :]])
        for _ in range(len(old) - len(new)):
            self.remove_row(self.coordinate_to_cell_key(Coordinate(len(new), 0)).row_key)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.cursor_row < len(self.shown):
            self.post_message(self.StepChosen(self.shown[event.cursor_row]))
