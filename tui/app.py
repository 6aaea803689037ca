"""The Rollgate console: header, gate bar, site map, pipeline, steps and log, on one client.

The app reads the run only through the client (events from a sequence number, commands
back), folds events with the same reducer as everything else, and redraws on a timer so a
flood of events never floods the screen. With a read-only client it only watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Log, Static, Tree

from rollgate.core import events as ev
from rollgate.core.client import CommandRejected, EngineGone, RunClient
from rollgate.core.errors import UserError
from rollgate.core.estimate import remaining_seconds
from rollgate.core.narrate import describe, exit_code
from rollgate.core.plan import Plan, Step
from rollgate.core.report import end_summary, run_outcome
from rollgate.core.secrets import mask
from rollgate.core.state import RunState, apply, touched_by
from rollgate.core.twins import twins_of
from rollgate.core.words import GLYPHS, STEP_DEVIATION, STEP_FAILED, WORDS
from rollgate.themes import STYLESHEET, THEMES
from rollgate.tui.gc_policy import screen_built
from rollgate.tui.header_fit import Piece, fit
from rollgate.tui.keys_footer import KeysFooter
from rollgate.tui.phase_rows import PhaseRows
from rollgate.tui.screens.dialogs import ConfirmScreen, LeaveScreen, PromptScreen, TextScreen
from rollgate.tui.settings import load_settings, save_setting

SITES_OPEN_UP_TO = 500  # nodes: a bigger cloud's site map opens with its sites closed
REFRESH = 1 / 60  # the log, header and gate bar: new output is on screen within a frame
# Tables and the site map: a DataTable re-renders every visible cell when one changes, which
# at 60 frames a second would cost most of each frame at thousands of nodes.
TABLES_REFRESH = 0.2
STEP_ROWS = 120  # rows in the steps table; a big phase has thousands of steps
LOG_LINES = 5000

HELP = """space  pause / resume the run
a      approve the open gate (asks for an optional comment)
A      approve it and its twins: the same question of the other sites (listed first;
       each is approved as it opens, journalled one by one with the same comment)
j      reject the open gate
r      retry the failed step (at a failure gate)
s      skip the failed step (asks for a reason)
x      abort the run (asks to confirm; running commands are terminated)
enter  node detail (on the site map); a step's exact command and output (steps table)
d      detail of the failed node at a failure gate (else of the node under the cursor)
/      search the log          f  follow the log on/off
v      filter the site map by node name or state
l      log of the node under the cursor only / everything
n      add a note to the journal (any time; headless: type `note TEXT` at a prompt)
t      next theme (dark, light, high contrast; remembered)
q      leave the console. Attached to an engine (the default): d detach (the run goes
       on), p pause then detach, x abort, Escape stay. Driving it in the foreground: quit,
       leaving the run paused (running steps finish, nothing is terminated; it says how to
       resume). ctrl+q and the palette's Quit ask the same
?      this help             ctrl+p  command palette"""


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


# a phase gate in the pipeline: not asked yet, or how it was decided
_GATE_WORDS = {"approve": "✔ approved", "reject": "■ rejected", "": "⏸ ahead"}

GATE_SUMMARY_LINES = 8  # the gate bar stays readable on a 24-line terminal
COMPACT_BELOW = (100, 32)  # a terminal narrower or lower than this gets the compact layout
COMPACT_GATE_LINES = 3


def short_version(version: str) -> str:
    """A package version as an operator compares it: upstream's part only, without the
    epoch and the distribution's revision (3:27.1.0-0ubuntu1~cloud0 -> 27.1.0); node detail
    has it whole. A probe's word (stale, not-running) stays as it is."""
    match = re.match(r"^(?:\d+:)?([0-9][^-~+]*)", version)
    return match.group(1) if match else version


def failed_nodes_of(plan: Plan, state: RunState, gate: Any) -> list[str]:
    """The nodes a phase's failure-budget gate asks about: those with a failed step in its own
    phase (another site's failed nodes are another gate's)."""
    phase = gate.id.removeprefix("gate:failures:").rsplit(":", 1)[0]
    steps = next((p.steps for p in plan.phases if p.id == phase), ())
    return list(dict.fromkeys(
        s.node for s in steps if state.steps[s.id].status in STEP_FAILED
    ))  # fmt: skip


def _gate_summary(summary: str, most: int = GATE_SUMMARY_LINES, room: int = 0) -> str:
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


class FollowingLog(Log):
    """The log pane: while the console follows it, a resize keeps its end in view."""

    def on_resize(self, event: events.Resize) -> None:
        if getattr(self.app, "_follow", False):
            self.call_after_refresh(self.scroll_end, animate=False)

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        """New lines' width, measured here on the loop: Textual's Log measures it in a thread
        that calls back into the app, which raises NoActiveAppError when the console closes
        meanwhile (seen at the end of a run)."""
        if lines:
            width = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, width)


class ActionsProvider(Provider):
    """Every console action in the command palette (ctrl+p), with its key."""

    def _actions(self) -> list[tuple[str, str, str]]:
        return [
            (b.description, b.action, b.key) for b in RollgateApp.BINDINGS if isinstance(b, Binding)
        ]

    async def discover(self) -> Hits:
        for description, action, key in self._actions():
            yield DiscoveryHit(
                description, partial(self.app.run_action, action), help=f"key: {key}"
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for description, action, key in self._actions():
            score = matcher.match(description)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(description),
                    partial(self.app.run_action, action),
                    help=f"key: {key}",
                )


class RollgateApp(App[int]):
    CSS_PATH = str(STYLESHEET)
    COMMANDS = App.COMMANDS | {ActionsProvider}
    TITLE = "Rollgate"
    BINDINGS = [
        # ? and q first: the footer keeps them on an 80-column terminal
        Binding("q", "quit_console", "Quit"),
        Binding("question_mark", "help", "Help"),
        # priority: the site map's tree and the tables would take space for themselves
        Binding("space", "pause_resume", "Pause", priority=True),
        Binding("a", "approve", "Approve"),
        Binding("A", "approve_twins", "Approve + twins"),  # shown when the gate has twins
        Binding("j", "reject", "Reject"),
        Binding("r", "retry", "Retry"),
        Binding("s", "skip", "Skip"),
        Binding("x", "abort", "Abort"),
        Binding("slash", "search", "Search", show=False),  # in ? help
        Binding("v", "filter", "Filter nodes", show=False),  # in ? help
        Binding("l", "log_scope", "Log: node/all", show=False),  # in ? help
        Binding("f", "follow", "Follow", show=False),  # in ? help
        Binding("n", "note", "Note"),
        Binding("d", "node_detail", "Node detail", show=False),  # in ? help and the gate bar
        Binding("t", "theme", "Theme", show=False),  # in ? help
    ]

    def __init__(
        self,
        client: RunClient,
        *,
        operator: str,
        resume_hint: str = "",
        clock: Callable[[], float] = time.time,
        window: tuple[float, float] | None = None,
        past_pace: float | None = None,
    ):
        super().__init__()
        self.past_pace = past_pace  # seconds per step of past runs of the cloud
        self.client = client
        self.operator = operator
        self.resume_hint = resume_hint
        self.quit_reason = ""  # why the run was left paused when the operator quit
        self.clock = clock
        recorded = (client.header or {}).get("window")
        if window is None and recorded:  # watch, replay: the window the run was held to
            window = (float(recorded["start"]), float(recorded["end"]))
        self.window = window
        self.state = RunState.initial(client.plan)
        self.read_only = client.read_only
        self._dirty = True
        self._tables_drawn = 0.0
        self._sites_turn = True  # the next table frame draws the tables (first), not the site map
        self._sites_dirty = True  # the site map's per-site counts are to be drawn
        self._header_second = 0
        self._gate_nodes_of: tuple[str, list[str]] = ("", [])  # gate id -> its failed nodes
        self._keys_for: tuple[str | None, bool] = ("", False)  # the footer's gate and end
        self._twins_of: tuple[str, list[tuple[str, str]]] = ("", [])  # gate id -> its twins
        self._header_text = Text()
        self._log_buffer: list[str] = []
        self._log_all: list[str] = []
        self._follow = True
        self._shown_gate: str | None = None
        self._asking_about: str | None = None  # the gate a dialog of this console asks about
        self._attached: list[str] = []  # consoles attached to a detached engine
        self._engine_gone = False  # the detached engine stopped answering
        self._estimate: tuple[int, float | None] = (-1, None)  # (second, work left)
        self._node_rows: dict[str, Any] = {}
        self._search = ""
        self._filter = ""
        self._step_rows: Sequence[tuple[str, ...]] = []
        self._shown_steps: list[Step] = []  # the steps table's rows, in order
        self._phases = {p.id: p for p in client.plan.phases}
        self._phase_steps = {p.id: p.steps for p in client.plan.phases}
        self._phase_sizes = {k: len(v) for k, v in self._phase_steps.items()}
        self._pipeline_cells: dict[str, tuple[str, str, str]] = {}
        self._touched_steps: set[str] = set()  # steps events changed since the last table frame
        self._phase_rows: dict[str, PhaseRows] = {}  # the steps table's groups, once shown
        self._steps_of: str | None = None  # the phase the steps table shows
        self._touched: set[str] = set()  # nodes whose label may have changed
        self.exit_code = 0
        self.error: str | None = None  # why the console had to stop, for the command to print
        for theme in THEMES:
            self.register_theme(theme)
        wanted = load_settings().get("theme", "rollgate-dark")
        self.theme = wanted if wanted in self.available_themes else "rollgate-dark"

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="gate")
        with Horizontal(id="body"):
            yield Tree("sites", id="sitemap")
            with Vertical(id="right"):
                yield DataTable(id="pipeline", cursor_type="row")
                yield DataTable(id="steps", cursor_type="row")
        yield FollowingLog(id="log", max_lines=LOG_LINES, highlight=False)
        yield Input(placeholder="search the log (Enter applies, empty clears)", id="search")
        yield KeysFooter()

    def on_mount(self) -> None:
        # Kept as attributes: a modal on top would hide them from query_one.
        self.w_header = self.query_one("#header", Static)
        self.w_gatebar = self.query_one("#gate", Static)
        self.w_pipeline = self.query_one("#pipeline", DataTable)
        self.w_steps = self.query_one("#steps", DataTable)
        self.w_sitemap = self.query_one("#sitemap", Tree)
        self.w_log = self.query_one("#log", Log)
        self.w_searchbox = self.query_one("#search", Input)
        pipeline = self.w_pipeline
        # the state and gate columns are as wide as their longest words: never cut
        pipeline.add_column("state", width=max(len(w) for w in WORDS["phase"]) + 2)
        pipeline.add_column("gate", width=len("✔ approved"))
        pipeline.add_columns("phase", "site")
        most = max((len(p.steps) for p in self.client.plan.phases), default=0)
        pipeline.add_column("steps", width=max(5, 2 * len(str(most)) + 1))  # "84/120" whole
        for phase in self.client.plan.phases:
            pipeline.add_row(
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
        steps = self.w_steps
        steps.add_columns("state", "step", "node", "try", "took")
        self._build_sitemap()
        pipeline.border_title = "pipeline"
        steps.border_title = "steps of the selected phase"
        self.w_log.border_title = "log (following)"
        self.call_after_refresh(screen_built)  # the site map is drawn: it lives with the app
        self.set_interval(REFRESH, self._refresh)
        if self.client.detachable:  # who else is attached, every 2 s
            self.set_interval(2.0, self._poll_attached)
        self._consume()

    def _build_sitemap(self) -> None:
        """(Re)build the site map with the nodes that match the filter (name or state)."""
        tree = self.w_sitemap
        tree.clear()
        tree.root.expand()
        self._node_rows = {}
        sites: dict[str, Any] = {}
        wanted = self._filter.lower()
        # a big cloud opens as a line per site with its counts (enter opens one); a filter
        # shows its matches opened
        opened = bool(wanted) or len(self.state.nodes) <= SITES_OPEN_UP_TO
        for name, node in self.state.nodes.items():
            if wanted and wanted not in name.lower() and wanted != node.status:
                continue
            if node.site not in sites:
                sites[node.site] = tree.root.add(node.site, expand=opened)
            self._node_rows[name] = sites[node.site].add_leaf(self._node_label(name), data=name)
        self._site_nodes = sites
        tree.border_title = f"site map: filter '{self._filter}'" if self._filter else "site map"
        self._touched = set()  # labelled as built: the first frame relabels nothing
        self._sites_dirty = True  # the sites' counts
        self._dirty = True

    # ---------------------------------------------------------------- events in

    @work(exclusive=True, group="events")
    async def _consume(self) -> None:
        try:
            async for event in self.client.events(1):
                steps, nodes = touched_by(self.state, event)
                self._touched.update(nodes)
                self._touched_steps.update(steps)
                apply(self.state, event)
                if isinstance(event, ev.GateDecided) and event.gate == self._asking_about:
                    self._decided_elsewhere(event)
                line = self._log_line(event)
                if line:
                    self._log_buffer.append(line)
                self._dirty = True
        except UserError as exc:  # a watched journal with a corrupt line
            self.error = str(exc)
            self.exit(return_code=2)
            return
        except (ConnectionError, OSError, EngineGone) as exc:  # a detached engine went away
            self._engine_lost(str(exc))
            return
        if self.state.finished is not None:
            self._show_end()
        elif self.client.detachable:
            self._engine_lost("its events stopped before the run ended")

    def _decided_elsewhere(self, event: ev.GateDecided) -> None:
        """The gate this console was asking about was decided (by another console, the
        command line): close the question and say who decided."""
        self._asking_about = None
        if isinstance(self.screen, PromptScreen | ConfirmScreen):
            self.screen.dismiss(None)
        self.notify(
            f"gate decided: {event.decision} by {event.operator}"
            + (f" — {event.comment}" if event.comment else ""),
            severity="warning",
        )

    @work(exclusive=True, group="attached")
    async def _poll_attached(self) -> None:
        with contextlib.suppress(Exception):  # the events stream says when the engine is gone
            attached = await self.client.attached()
            if attached != self._attached:
                self._attached = attached
                self._dirty = True

    def _engine_lost(self, why: str) -> None:
        """The detached engine is gone: say so at once, and how to resume."""
        self._engine_gone = True
        self._dirty = True
        self.push_screen(
            TextScreen(
                "ENGINE LOST",
                f"The run's engine stopped answering ({why}); the run is not being driven.\n\n"
                f"Resume it with:\n{self.resume_hint}",
            )
        )

    def _show_end(self) -> None:
        """The end of the run: its word, node counts, time against the window, deviations,
        how to get the report, then versions and every node that was not upgraded."""
        lines = end_summary(self.client.plan, self.state, self.window)[1:]  # title: its word
        if self.state.error:
            lines.insert(0, self.state.error)
        run_id = self.state.run_id or self.client.header.get("run_id", "")
        details = next(
            (i for i, line in enumerate(lines) if line.startswith(("versions", "package", " "))
             or line.endswith("not upgraded:")),
            len(lines),
        )  # fmt: skip
        lines[details:details] = [f"the change record: rollgate report {run_id}", ""]
        self.push_screen(TextScreen(f"run {run_outcome(self.state)}", "\n".join(lines)))

    def _log_line(self, event: ev.Event) -> str | None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        if isinstance(event, ev.StepOutput):
            step = self.state.steps.get(event.step)
            node = step.node if step is not None else "?"
            return "\n".join(f"{stamp} {node} {line}" for line in event.lines)
        if isinstance(event, ev.StepStarted):
            return f"{stamp} {event.node} $ {event.command or event.step.rsplit('/', 1)[-1]}"
        text = describe(event, self.client.plan)
        return f"{stamp} » {text}" if text else None

    # ---------------------------------------------------------------- drawing

    def _refresh(self) -> None:
        if self._log_buffer:
            lines = "\n".join(self._log_buffer).split("\n")
            self._log_buffer.clear()
            self._log_all.extend(lines)
            del self._log_all[:-LOG_LINES]
            wanted = self._search.lower()
            shown = [ln for ln in lines if wanted in ln.lower()] if wanted else lines
            if shown:
                self.w_log.write_lines(shown, scroll_end=self._follow)
        second = int(self.clock())
        if self._dirty or second != self._header_second:  # the clock in it moves each second
            self._header_second = second
            self._draw_header()
        if not (self._dirty or self._touched or self._sites_dirty):
            return
        if self._dirty:
            self._draw_gate()  # a gate shows at once
        now = time.monotonic()
        if now - self._tables_drawn < TABLES_REFRESH / 2:
            return  # tables and the site map catch up within TABLES_REFRESH
        self._tables_drawn = now
        # the tables, then the site map half a period later: two frames of half the work
        # each, rather than one long frame that holds back the log and the header
        self._sites_turn = not self._sites_turn
        if self._sites_turn:
            if self._touched or self._sites_dirty:
                self._draw_sites()
        elif self._dirty:
            self._dirty = False
            self._draw_pipeline()
            self._draw_steps()

    def _draw_header(self) -> None:
        s, plan = self.state, self.client.plan
        elapsed = ""
        if s.started:
            secs = int((s.finished or self.clock()) - s.started)
            elapsed = f"  elapsed {secs // 3600:d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        window = ""
        if self.window is not None:
            start, end = self.window
            now = self.clock()
            if now < start:
                window = f"  window opens in {_span(start - now)}"
            else:
                window = f"  window left {_span(end - now)}" if now < end else "  WINDOW OVER"
        estimate, late = "", ""
        second = int(self.clock())
        if self._estimate[0] != second:  # a walk over every step: once a second is enough
            self._estimate = (second, remaining_seconds(s, self.clock(), self.past_pace))
        left = self._estimate[1]
        if left is not None and s.finished is None and s.started is not None:
            estimate = f"  ~{_span(left)} of work left"
            if self.window is not None and self.clock() + left > self.window[1]:
                late = f" (past the window's end by {_span(self.clock() + left - self.window[1])})"
        counts = s.counts()
        lost = (self._engine_gone or self.client.driver_gone) and s.finished is None
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
                if self.read_only
                else f"  operator {self.operator}",
                30,
            ),
            Piece(f"  {self.operator.upper()}" if self.read_only else "", 70, "bold"),
            Piece(
                f"  attached: {', '.join(self._attached)}" if len(self._attached) > 1 else "", 20
            ),
            Piece(
                "  ENGINE LOST: it stopped without finishing; resume it" if lost else "",
                100,
                "bold red",
            ),
        ]
        width = max(20, (self.w_header.size.width or self.size.width) - 2)  # its padding
        text = fit(first, width)
        text.append("\n")
        text.append(" ".join(f"{GLYPHS.get(k, '')} {k} {v}" for k, v in sorted(counts.items())))
        if text != self._header_text:  # an idle console does no work
            self._header_text = text
            self.w_header.update(text, layout=False)  # two lines, always: no new layout

    def _draw_gate(self) -> None:
        bar = self.w_gatebar
        gate = self.state.gate
        keys_for = (gate.id if gate is not None else None, self.state.finished is not None)
        if keys_for != self._keys_for:  # the footer shows the keys this moment takes
            self._keys_for = keys_for
            self.refresh_bindings()
        self.set_class(gate is not None, "gating")  # compact: the steps make room for it
        if gate is None:
            bar.remove_class("open")
            return
        keys = {
            "approve": "a approve",
            "reject": "j reject",
            "retry": "r retry",
            "skip": "s skip",
            "abort": "x abort",
            "rerun": "a re-run",
            "mark-done": "s mark done",
        }
        options = "   ".join(keys.get(o, o) for o in gate.options)
        compact = self.has_class("compact")
        choices = list(gate.choices)
        room = max(20, self.size.width - 6)
        if compact:  # one line each: the gate bar leaves room for the pipeline
            choices = [c if len(c) <= room else c[: room - 1] + "…" for c in choices]
        twins = self._twins() if "approve" in gate.options and not self.read_only else []
        if twins:
            options += f"   A approve + twin(s) at {', '.join(site for site, _ in twins)}"
        failed = self._gate_nodes()
        if failed:
            more = f" (+{len(failed) - 1})" if len(failed) > 1 else ""
            options += f"   d detail of {failed[0]}{more}"
        bar.update(
            Text.assemble(
                ("⏸ GATE ", "bold"),
                f"({gate.kind}) {gate.title}\n",
                _gate_summary(gate.summary, COMPACT_GATE_LINES, room)
                if compact
                else _gate_summary(gate.summary),
                "" if self.read_only else "".join(f"· {c}\n" for c in choices),
                ("" if self.read_only else options, "bold"),
            )
        )
        bar.add_class("open")
        if gate.id != self._shown_gate:
            self._shown_gate = gate.id
            self.bell()

    def _draw_pipeline(self) -> None:
        table = self.w_pipeline
        columns = table.ordered_columns
        status_column, gate_column, steps_column = columns[0].key, columns[1].key, columns[4].key
        decided = {g.id: g.decision for g in self.state.gates}
        open_gate = self.state.gate.id if self.state.gate is not None else None
        for phase in self.client.plan.phases:
            status = self.state.phases.get(phase.id, "pending")
            gate = ""
            if phase.gate is not None:
                gate = (
                    "▶ open"
                    if phase.gate.id == open_gate
                    else _GATE_WORDS.get(decided.get(phase.gate.id) or "", "⏸ ahead")
                )
            cells = (
                f"{GLYPHS.get(status, '?')} {status}",
                f"{self.state.phase_done.get(phase.id, 0)}/{self._phase_sizes[phase.id]}",
                gate,
            )
            if self._pipeline_cells.get(phase.id) != cells:
                self._pipeline_cells[phase.id] = cells
                table.update_cell(phase.id, status_column, Text(cells[0]))
                table.update_cell(phase.id, steps_column, Text(cells[1]))
                table.update_cell(phase.id, gate_column, Text(cells[2]))
        running = self.state.current_phases
        if running and not table.has_focus:  # the phase at work stays in view (80x24, 60 rows)
            row = table.get_row_index(running[0])
            if table.cursor_row != row:
                table.move_cursor(row=row, animate=False)
            visible = max(1, table.scrollable_content_region.height - 1)  # less its header
            if not table.scroll_y <= row < table.scroll_y + visible:
                table.scroll_to(y=row, animate=False)

    def _selected_phase(self) -> str | None:
        table = self.w_pipeline
        if table.row_count == 0:
            return None
        running = self.state.current_phases
        if running and not table.has_focus:
            return running[0]
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _draw_steps(self) -> None:
        """The selected phase's steps: what runs and failed first, then the next and the
        latest, at most STEP_ROWS rows, redrawn only when they change."""
        phase_id = self._selected_phase()
        table = self.w_steps
        touched, self._touched_steps = self._touched_steps, set()
        steps = self.state.steps
        changed = {steps[step].phase for step in touched if step in steps}
        for touched_phase in changed & self._phase_rows.keys():
            self._phase_rows[touched_phase].update(touched, steps)
        if phase_id is None:
            return
        if phase_id not in self._phase_rows:
            self._phase_rows[phase_id] = PhaseRows(self._phase_steps[phase_id], self.state.steps)
        elif phase_id == self._steps_of and phase_id not in changed:
            return  # nothing in it changed since the last frame
        self._steps_of = phase_id
        phase = self._phases[phase_id]
        grouped = self._phase_rows[phase_id]
        self._shown_steps = grouped.shown(STEP_ROWS)  # row i is this step (enter: detail)
        rows = [
            (
                f"{GLYPHS.get(st.status, '?')} {st.status}",
                step.title[:60],
                step.node,
                str(st.attempts or ""),
                f"{st.duration:.1f}s" if st.duration else "",
            )
            for step, st in ((step, steps[step.id]) for step in self._shown_steps)
        ]
        if rows != self._step_rows:
            self._update_rows(table, self._step_rows, rows)
            self._step_rows = rows
        remaining, average, total = grouped.left, grouped.average_duration, len(grouped.steps)
        title = (
            f"{phase.title} @ {phase.site}: {remaining} steps left"
            + (f", about {remaining * average:.0f}s" if average else "")
            + (f" (showing {len(rows)} of {total})" if len(rows) < total else "")
        )
        if table.border_title != title:
            table.border_title = title

    @staticmethod
    def _update_rows(
        table: DataTable, old: Sequence[tuple[str, ...]], new: Sequence[tuple[str, ...]]
    ) -> None:
        """Change only the cells that differ: clearing and refilling a table makes Textual
        lay out the whole screen again, which costs a frame at thousands of nodes."""
        for row, (before, after) in enumerate(zip(old, new, strict=False)):
            if before != after:
                for column, (a, b) in enumerate(zip(before, after, strict=True)):
                    if a != b:
                        table.update_cell_at(Coordinate(row, column), Text(b), update_width=False)
        if len(new) > len(old):
            # Text, not str: a str cell is parsed as markup every time it is rendered
            table.add_rows([tuple(map(Text, row)) for row in new[len(old) :]])
        for _ in range(len(old) - len(new)):
            table.remove_row(table.coordinate_to_cell_key(Coordinate(len(new), 0)).row_key)

    def _node_label(self, name: str) -> Text:
        """A node's line in the site map: glyph, name, state, scheduler, version."""
        node = self.state.nodes[name]
        extra = []
        if node.version:  # first, and short: what an operator compares across nodes
            extra.append(short_version(node.version))
        if node.disabled:
            extra.append("disabled in scheduler")
        return Text.assemble(
            f"{GLYPHS.get(node.status, '?')} ",
            (name.ljust(14), "bold"),
            f" {node.status:<11}",
            " · ".join(extra),
        )

    def _draw_sites(self) -> None:
        """Relabel only the nodes that events touched since the last frame."""
        touched, self._touched = self._touched, set()
        self._sites_dirty = False
        for name in touched:
            leaf = self._node_rows.get(name)
            if leaf is None or name not in self.state.nodes:
                continue
            label = self._node_label(name)
            if str(leaf.label) != str(label):
                leaf.set_label(label)
        per_site: dict[str, dict[str, int]] = {}
        for node in self.state.nodes.values():  # one pass, not one per site
            counts = per_site.setdefault(node.site, {})
            counts[node.status] = counts.get(node.status, 0) + 1
        for site, branch in self._site_nodes.items():
            c = per_site.get(site, {})
            branch.set_label(f"{site}  " + "  ".join(f"{k} {v}" for k, v in sorted(c.items())))

    # ---------------------------------------------------------------- commands out

    DECISIONS = frozenset(
        {"approve", "approve_twins", "reject", "retry", "skip", "abort", "pause_resume", "note"}
    )

    # a gate's decision -> the key's action (a re-run is approve's key, mark-done skip's)
    GATE_KEYS = {"approve": "approve", "reject": "reject", "retry": "retry", "skip": "skip",
                 "rerun": "approve", "mark-done": "skip"}  # fmt: skip

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The keys that can do something now, and only they, in the footer: none of the
        decisions in a read-only console (watch, replay) or once the run has ended; a gate's
        keys only while a gate that takes them is open."""
        if action not in self.DECISIONS:
            return True
        if self.read_only or self.state.finished is not None:
            return False
        if action in ("approve", "reject", "retry", "skip"):
            gate = self.state.gate
            return gate is not None and action in {self.GATE_KEYS.get(o) for o in gate.options}
        if action == "approve_twins":
            gate = self.state.gate
            return gate is not None and "approve" in gate.options and bool(self._twins())
        return True

    async def _send(self, kind: str, comment: str = "", twins: tuple[str, ...] = ()) -> None:
        if self.read_only:
            self.notify("read-only: this console only watches", severity="warning")
            return
        gate = self.state.gate
        try:
            await self.client.send(
                ev.Command(
                    kind,
                    self.operator,
                    comment,
                    gate.id if gate and kind not in ("pause", "resume", "note", "quit") else None,
                    twins,
                )
            )
        except (CommandRejected, ValueError) as exc:
            self.notify(str(exc), severity="warning")

    def _gate_allows(self, option: str) -> bool:
        gate = self.state.gate
        if gate is None or option not in gate.options:
            self.notify(f"no open gate takes '{option}'", severity="warning")
            return False
        return True

    @work(exclusive=True, group="dialog")
    async def action_approve(self) -> None:
        gate = self.state.gate
        option = "rerun" if gate is not None and "rerun" in gate.options else "approve"
        if not self._gate_allows(option):
            return
        self._asking_about = gate.id if gate else None
        comment = await self.push_screen_wait(
            PromptScreen(f"{option} — {gate.title if gate else ''}\nComment (optional):")
        )
        if comment is not None and self._asking_about is not None:
            await self._send(option, comment)
        self._asking_about = None

    def _twins(self) -> list[tuple[str, str]]:
        """(site, gate id) of the open gate's twins still to be asked (cached per gate)."""
        gate = self.state.gate
        if gate is None:
            return []
        if self._twins_of[0] != gate.id:
            decided = {g.id for g in self.state.gates if g.decision}
            found = twins_of(self.client.plan, gate.id, decided)
            self._twins_of = (gate.id, [(site, g.id) for site, g in found])
        return self._twins_of[1]

    @work(exclusive=True, group="dialog")
    async def action_approve_twins(self) -> None:
        """Approve the open gate and, explicitly, its twins at the other sites (each approved
        as it opens, journalled one by one with this comment)."""
        gate, twins = self.state.gate, self._twins()
        if gate is None or not twins or not self._gate_allows("approve"):
            return
        self._asking_about = gate.id
        listed = ", ".join(f"{site} ({gid})" for site, gid in twins)
        comment = await self.push_screen_wait(
            PromptScreen(
                f"approve this and the {len(twins)} identical gate(s) of the other sites: "
                f"{listed}\n{gate.title}\nComment (optional, journalled with each):"
            )
        )
        if comment is not None and self._asking_about is not None:
            await self._send("approve", comment, tuple(gid for _, gid in twins))
        self._asking_about = None

    @work(exclusive=True, group="dialog")
    async def action_reject(self) -> None:
        if not self._gate_allows("reject"):
            return
        self._asking_about = self.state.gate.id if self.state.gate else None
        comment = await self.push_screen_wait(PromptScreen("Reject: why? (optional)"))
        if comment is not None and self._asking_about is not None:
            await self._send("reject", comment)
        self._asking_about = None

    async def action_retry(self) -> None:
        if self._gate_allows("retry"):
            await self._send("retry")

    @work(exclusive=True, group="dialog")
    async def action_skip(self) -> None:
        gate = self.state.gate
        option = "mark-done" if gate is not None and "mark-done" in gate.options else "skip"
        if not self._gate_allows(option):
            return
        self._asking_about = gate.id if gate else None
        reason = await self.push_screen_wait(
            PromptScreen(f"{option}: give the reason for the record", required=True)
        )
        if reason and self._asking_about is not None:
            await self._send(option, reason)
        self._asking_about = None

    @work(exclusive=True, group="dialog")
    async def action_abort(self) -> None:
        if await self.push_screen_wait(
            ConfirmScreen("Abort the run? Running commands are terminated and nothing new starts.")
        ):
            await self._send("abort", "aborted from the console")

    @work(exclusive=True, group="dialog")
    async def action_note(self) -> None:
        """A note in the journal, with the operator's name and the time, at any moment."""
        if self.read_only:
            self.notify("read-only: this console only watches", severity="warning")
            return
        text = await self.push_screen_wait(
            PromptScreen("note for the journal (who and when are added)", required=True)
        )
        if text:
            await self._send("note", text)
            self.notify("note added to the journal")

    async def action_pause_resume(self) -> None:
        await self._send("resume" if self.state.status == "paused" else "pause")

    def action_follow(self) -> None:
        self._follow = not self._follow
        log = self.w_log
        log.border_title = "log (following)" if self._follow else "log (paused: f follows)"
        if self._follow:
            log.scroll_end(animate=False)

    def action_search(self) -> None:
        box = self.w_searchbox
        box.add_class("open")
        box.focus()

    @work(exclusive=True, group="dialog")
    async def action_filter(self) -> None:
        answer = await self.push_screen_wait(
            PromptScreen(
                "Show nodes whose name contains this, or in this state (pending, working, done, "
                "failed, unreachable, skipped); empty shows all:"
            )
        )
        if answer is not None:
            self._filter = answer
            self._build_sitemap()

    def action_log_scope(self) -> None:
        """Show only the log of the node under the site map's cursor, or everything again."""
        node = self.w_sitemap.cursor_node
        name = node.data if node is not None else None
        if self._search or not name:
            self._apply_search("")
        else:
            self._apply_search(f" {name} ", title=f"log of {name} (l shows everything)")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "search":
            return
        event.input.remove_class("open")
        self._apply_search(event.value.strip())

    def _apply_search(self, text: str, title: str | None = None) -> None:
        self._search = text
        log = self.w_log
        log.clear()
        lines = (
            [ln for ln in self._log_all if self._search.lower() in ln.lower()]
            if self._search
            else self._log_all
        )
        log.write_lines(lines[-LOG_LINES:], scroll_end=self._follow)
        if self._follow:  # the log keeps following: its end once the new lines are laid out
            self.call_after_refresh(log.scroll_end, animate=False)
        log.border_title = title or (
            f"log: {len(lines)} lines matching '{self._search}'"
            if self._search
            else "log (following)"
        )

    def action_theme(self) -> None:
        names = [t.name for t in THEMES]
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        save_setting("theme", self.theme)
        self.notify(f"theme: {self.theme}")

    def action_help(self) -> None:
        self.push_screen(TextScreen("Keys", HELP))

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        if event.node.data:
            self._show_node(event.node.data)

    def _gate_nodes(self) -> list[str]:
        """The nodes the open failure gate is about: its step's, or every failed node."""
        gate = self.state.gate
        if gate is None or gate.kind != "failure":
            return []
        if gate.step is not None and gate.step in self.state.steps:
            return [self.state.steps[gate.step].node]
        if self._gate_nodes_of[0] != gate.id:  # nothing fails anew while its gate is open
            self._gate_nodes_of = (gate.id, failed_nodes_of(self.client.plan, self.state, gate))
        return self._gate_nodes_of[1]

    def action_node_detail(self) -> None:
        """The failed node of the open gate (the first, when several), else the site map's."""
        failed = self._gate_nodes()
        if failed:
            self._show_node(failed[0])
            return
        cursor = self.w_sitemap.cursor_node
        if cursor is not None and cursor.data:
            self._show_node(cursor.data)
        else:
            self.notify("no failure gate open and no node under the cursor", severity="warning")

    def _show_node(self, name: str) -> None:
        node = self.state.nodes[name]
        lines = [
            f"site {node.site}   state {node.status}   version {node.version or '?'}"
            f"   scheduler {'disabled' if node.disabled else 'enabled'}",
            "",
        ]
        if node.services:
            lines.insert(
                1, "services: " + ", ".join(f"{k} {v}" for k, v in sorted(node.services.items()))
            )
        for step in self.client.plan.steps:
            if step.node == name:
                st = self.state.steps[step.id]
                lines.append(f"{GLYPHS.get(st.status, '?')} {st.status:<11} {step.title}")
                if st.status in (*STEP_FAILED, STEP_DEVIATION):  # what ran, and why it failed
                    lines.append(
                        f"      runs: {mask(step.command) if step.command else step.action}"
                    )
                    exit_word = f"exit {st.exit_status}: " if st.exit_status is not None else ""
                    lines.append(f"      {exit_word}{st.error}" if st.error or exit_word else "")
                    lines += [f"      | {t}" for t in list(st.tail)[-8:]]
                    continue
                lines += [f"      {t}" for t in list(st.tail)[-3:]]
        self.push_screen(TextScreen(f"node {name}", "\n".join(lines[:400])))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """enter on a step: what it runs (the exact command, before it runs), and how it went."""
        if event.data_table.id != "steps" or event.cursor_row >= len(self._shown_steps):
            return
        step = self._shown_steps[event.cursor_row]
        st = self.state.steps[step.id]
        lines = [
            f"{step.title} on {step.node}",
            f"state {st.status}   attempts {st.attempts}"
            + (f"   exit status {st.exit_status}" if st.exit_status is not None else ""),
            "",
            "runs: " + (step.command or f"{step.executor} API call {step.action} {step.args}"),
        ]
        if st.error:
            lines += ["", st.error]
        if st.tail:
            lines += ["", "last output:", *(f"  {t}" for t in st.tail)]
        self.push_screen(TextScreen(f"step {step.title}", "\n".join(lines)))

    def on_resize(self, event: events.Resize) -> None:
        """Below COMPACT_BELOW the site map folds away so the gate, pipeline, steps and log
        stay readable (80x24)."""
        width, height = COMPACT_BELOW
        compact = event.size.width < width or event.size.height < height
        self.set_class(compact, "compact")
        if compact and self.focused is not None and self.focused.id in ("sitemap", "pipeline"):
            # the focus the folded site map passed on: nothing holds it, so the pipeline keeps
            # the phase at work in view (tab gives it the keys)
            self.call_after_refresh(self.set_focus, None)
        self._dirty = True
        self._header_second = -1  # the header fits the new width at the next frame

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "pipeline":
            self._dirty = True

    @work(exclusive=True, group="dialog")
    async def action_quit_console(self) -> None:
        if self.client.detachable and not self.read_only:  # the run goes on
            if self.state.finished is not None:
                self.exit(self.exit_code)
                return
            choice = await self.push_screen_wait(LeaveScreen(self.state.run_id))
            if choice == "abort" and await self.push_screen_wait(
                ConfirmScreen("Abort the run? Running commands are terminated.")
            ):
                await self._send("abort", "aborted from the console")
            elif choice == "pause" and self.state.status == "running":
                await self._send("pause", "paused before detaching")
            if choice in ("detach", "pause", "abort"):
                self.exit(self.exit_code)
            return
        active = self.state.status in ("running", "paused") and not self.read_only
        if active and not await self.push_screen_wait(
            ConfirmScreen(
                "A run is active. Quit, leaving it paused? Running steps finish first and "
                "nothing is terminated (x aborts instead); resume later with\n"
                f"{self.resume_hint}"
            )
        ):
            return
        if active:
            self.quit_reason = "the operator quit the console; paused, resumable"
            await self._send("quit", self.quit_reason)
        self.exit(self.exit_code)

    async def action_quit(self) -> None:
        """ctrl+q and the command palette's Quit: the same question as `q`."""
        self.action_quit_console()


async def run_console(session: Any) -> int:
    """Drive the run in this process with the console attached to it (`--foreground`); the
    console steers it only through the session's client. Returns the run's exit code."""
    options = session.engine.options
    operator = options.operator
    window = (session.window.start, session.window.end) if session.window is not None else None
    hint = f"rollgate run {session.inventory.file} --resume {session.run_id}"
    app = RollgateApp(
        session.client,
        operator=operator,
        resume_hint=hint,
        window=window,
        past_pace=options.past_pace,
    )
    task = asyncio.create_task(session.engine.run())
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def quit_run(who: str, reason: str) -> None:
        """Leave the run paused and resumable: running steps finish, nothing new starts."""
        with contextlib.suppress(CommandRejected):
            await session.client.send(ev.Command("quit", who, reason))

    def on_signal(name: str) -> None:  # the terminal went away, or someone asked us to stop
        job = asyncio.ensure_future(
            quit_run(f"signal:{name} by {operator}", f"{name}: the console stopped; resumable")
        )
        pending.add(job)
        job.add_done_callback(pending.discard)
        app.exit()

    handled = []
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum.name)
            handled.append(signum)
    try:
        await app.run_async()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    if not task.done():  # closed without aborting: running steps finish, the run is resumable
        await quit_run(operator, app.quit_reason or "the console closed; resumable")
    outcome = await task
    print(f"run {outcome}; journal: {session.journal_path}")
    if exit_code(outcome) == 1:
        print(f"resume with: {hint}")
    return exit_code(outcome)
