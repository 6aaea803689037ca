"""The Rollgate console: header, gate bar, site map, pipeline, steps and log, on one client.

The app reads the run only through the client (events from a sequence number, commands
back), folds events with the same reducer as everything else, and redraws on a timer so a
flood of events never floods the screen. With a read-only client it only watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.widgets import Input

from rollgate.core import events as ev
from rollgate.core.client import CommandRejected, EngineGone, RunClient
from rollgate.core.errors import UserError
from rollgate.core.estimate import remaining_seconds
from rollgate.core.narrate import describe, exit_code
from rollgate.core.plan import Plan
from rollgate.core.problems import budget_phase
from rollgate.core.report import run_outcome
from rollgate.core.state import RunState, apply, touched_by
from rollgate.core.twins import twins_of
from rollgate.core.words import STEP_FAILED
from rollgate.themes import STYLESHEET, THEMES
from rollgate.tui.gc_policy import screen_built
from rollgate.tui.keys_footer import KeysFooter
from rollgate.tui.pages import end_page, node_page, step_page
from rollgate.tui.screens.dialogs import ConfirmScreen, LeaveScreen, PromptScreen, TextScreen
from rollgate.tui.settings import load_settings, save_setting
from rollgate.tui.widgets.gate_bar import GateBar, GateView
from rollgate.tui.widgets.pipeline import PipelineTable
from rollgate.tui.widgets.run_header import HeaderView, RunHeader
from rollgate.tui.widgets.run_log import LOG_LINES, RunLog
from rollgate.tui.widgets.site_map import SiteMap
from rollgate.tui.widgets.steps_table import StepsTable

REFRESH = 1 / 60  # the log, header and gate bar: new output is on screen within a frame
# Tables and the site map: a DataTable re-renders every visible cell when one changes, which
# at 60 frames a second would cost most of each frame at thousands of nodes.
TABLES_REFRESH = 0.2
COMPACT_BELOW = (100, 32)  # a terminal narrower or lower than this gets the compact layout

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


def failed_nodes_of(plan: Plan, state: RunState, gate: Any) -> list[str]:
    """The nodes a phase's failure-budget gate asks about: those with a failed step in its own
    phase (another site's failed nodes are another gate's)."""
    phase = budget_phase(gate.id)
    steps = next((p.steps for p in plan.phases if p.id == phase), ())
    return list(dict.fromkeys(
        s.node for s in steps if state.steps[s.id].status in STEP_FAILED
    ))  # fmt: skip


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
        self._header_second = 0
        self._gate_nodes_of: tuple[str, list[str]] = ("", [])  # gate id -> its failed nodes
        self._keys_for: tuple[str | None, bool] = ("", False)  # the footer's gate and end
        self._twins_of: tuple[str, list[tuple[str, str]]] = ("", [])  # gate id -> its twins
        self._log_buffer: list[str] = []
        self._log_all: list[str] = []
        self._shown_gate: str | None = None
        self._asking_about: str | None = None  # the gate a dialog of this console asks about
        self._attached: list[str] = []  # consoles attached to a detached engine
        self._engine_gone = False  # the detached engine stopped answering
        self._estimate: tuple[int, float | None] = (-1, None)  # (second, work left)
        self._search = ""
        self._filter = ""
        self.exit_code = 0
        self.error: str | None = None  # why the console had to stop, for the command to print
        for theme in THEMES:
            self.register_theme(theme)
        wanted = load_settings().get("theme", "rollgate-dark")
        self.theme = wanted if wanted in self.available_themes else "rollgate-dark"

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield RunHeader()
        yield GateBar()
        with Horizontal(id="body"):
            yield SiteMap()
            with Vertical(id="right"):
                yield PipelineTable()
                yield StepsTable()
        yield RunLog()
        yield Input(placeholder="search the log (Enter applies, empty clears)", id="search")
        yield KeysFooter()

    def on_mount(self) -> None:
        # Kept as attributes: a modal on top would hide them from query_one.
        self.w_header = self.query_one(RunHeader)
        self.w_gatebar = self.query_one(GateBar)
        self.w_pipeline = self.query_one(PipelineTable)
        self.w_steps = self.query_one(StepsTable)
        self.w_sitemap = self.query_one(SiteMap)
        self.w_log = self.query_one(RunLog)
        self.w_searchbox = self.query_one("#search", Input)
        self.w_pipeline.build(self.client.plan)
        self.w_steps.build(self.client.plan)
        self._build_sitemap()
        self.w_log.border_title = "log (following)"
        self.call_after_refresh(screen_built)  # the site map is drawn: it lives with the app
        self.set_interval(REFRESH, self._refresh)
        if self.client.detachable:  # who else is attached, every 2 s
            self.set_interval(2.0, self._poll_attached)
        self._consume()

    def _build_sitemap(self) -> None:
        """(Re)build the site map with the nodes that match the filter (name or state)."""
        self.w_sitemap.build(self.state, self._filter)
        self._dirty = True

    def show_moment(self, state: RunState, log_lines: list[str]) -> None:
        """Show `state` whole, with the log `log_lines` (replay's seek): every widget draws
        it anew at the next frames."""
        self.state = state
        self.w_sitemap.touched = set(state.nodes)
        self.w_sitemap.counts_dirty = True
        self.w_steps.forget()
        self.w_pipeline.forget()
        self._dirty = True
        self._log_all = log_lines[-LOG_LINES:]
        self._log_buffer.clear()
        self.w_log.clear()
        self.w_log.write_lines(self._log_all)

    # ---------------------------------------------------------------- events in

    @work(exclusive=True, group="events")
    async def _consume(self) -> None:
        try:
            async for event in self.client.events(1):
                steps, nodes = touched_by(self.state, event)
                self.w_sitemap.touched.update(nodes)
                self.w_steps.touched.update(steps)
                apply(self.state, event)
                if isinstance(event, ev.GateDecided) and event.gate == self._asking_about:
                    self._decided_elsewhere(event)
                line = self.log_line(event)
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
        """The end of the run: its word, then what end_page() says of it."""
        run_id = self.state.run_id or self.client.header.get("run_id", "")
        page = end_page(self.client.plan, self.state, self.window, run_id)
        self.push_screen(TextScreen(f"run {run_outcome(self.state)}", page))

    def log_line(self, event: ev.Event) -> str | None:
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
                self.w_log.write_lines(shown, scroll_end=self.w_log.following)
        second = int(self.clock())
        if self._dirty or second != self._header_second:  # the clock in it moves each second
            self._header_second = second
            self._draw_header()
        if not (self._dirty or self.w_sitemap.pending):
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
            if self.w_sitemap.pending:
                self.w_sitemap.draw(self.state)
        elif self._dirty:
            self._dirty = False
            self.w_pipeline.draw(self.state)
            self.w_steps.draw(self.state, self.w_pipeline.selected(self.state))

    def _draw_header(self) -> None:
        s, now = self.state, self.clock()
        second = int(now)
        if self._estimate[0] != second:  # a walk over every step: once a second is enough
            self._estimate = (second, remaining_seconds(s, now, self.past_pace))
        lost = (self._engine_gone or self.client.driver_gone) and s.finished is None
        view = HeaderView(now, self.window, self._estimate[1], self.operator, self.read_only,
                          tuple(self._attached), lost)  # fmt: skip
        self.w_header.draw(self.client.plan, s, view)

    def _draw_gate(self) -> None:
        gate = self.state.gate
        keys_for = (gate.id if gate is not None else None, self.state.finished is not None)
        if keys_for != self._keys_for:  # the footer shows the keys this moment takes
            self._keys_for = keys_for
            self.refresh_bindings()
        self.set_class(gate is not None, "gating")  # compact: the steps make room for it
        twins = (
            self._twins() if gate is not None and "approve" in gate.options
            and not self.read_only else []
        )  # fmt: skip
        view = GateView(
            read_only=self.read_only,
            compact=self.has_class("compact"),
            width=self.size.width,
            twin_sites=tuple(site for site, _ in twins),
            failed_nodes=tuple(self._gate_nodes()),
        )
        self.w_gatebar.draw(gate, view)
        if gate is not None and gate.id != self._shown_gate:
            self._shown_gate = gate.id
            self.bell()

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
        log = self.w_log
        log.following = not log.following
        log.border_title = "log (following)" if log.following else "log (paused: f follows)"
        if log.following:
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
        name = self.w_sitemap.cursor_name
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
        log.write_lines(lines[-LOG_LINES:], scroll_end=log.following)
        if log.following:  # the log keeps following: its end once the new lines are laid out
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

    def on_site_map_node_chosen(self, event: SiteMap.NodeChosen) -> None:
        self._show_node(event.name)

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
        name = self.w_sitemap.cursor_name
        if name is not None:
            self._show_node(name)
        else:
            self.notify("no failure gate open and no node under the cursor", severity="warning")

    def _show_node(self, name: str) -> None:
        page = node_page(self.client.plan, self.state, name)
        self.push_screen(TextScreen(f"node {name}", page))

    def on_steps_table_step_chosen(self, event: StepsTable.StepChosen) -> None:
        """enter on a step: what it runs (the exact command, before it runs), and how it went."""
        step = event.step
        self.push_screen(TextScreen(f"step {step.title}", step_page(step, self.state)))

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

    def on_pipeline_table_phase_chosen(self, event: PipelineTable.PhaseChosen) -> None:
        self._dirty = True  # the steps table shows the phase under the cursor

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
