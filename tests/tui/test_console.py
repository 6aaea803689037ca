"""The console driven like an operator would, on a real engine and the in-process lab."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import Label, OptionList

from rollgate.core import events as ev
from rollgate.core.client import ClientBase
from rollgate.core.inventory import load_inventory
from rollgate.core.plan import Plan, build_plan
from rollgate.core.session import RunOptions, Session, open_session
from rollgate.tui.app import RollgateApp
from rollgate.tui.keys_footer import KeysFooter
from rollgate.tui.screens.dialogs import PromptScreen, TextScreen
from rollgate.tui.settings import load_settings
from tests.bench.scale import scale_inventory_file

SMALL = Path(__file__).parents[1] / "engine" / "small.yaml"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLGATE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ROLLGATE_CONFIG_DIR", str(tmp_path / "config"))


@contextlib.asynccontextmanager
async def console(
    faults: list[str] | None = None, *, auto_approve: bool = False, inventory: Path = SMALL
) -> AsyncIterator[tuple[Session, RollgateApp, object]]:
    """The console on a run of the small lab cloud; `auto_approve` where the gates are not
    what the test is about (the run then goes through without key presses, much sooner)."""
    options = RunOptions(
        operator="olga",
        lab_inprocess=True,
        time_scale=0,
        faults=faults or [],
        auto_approve=auto_approve,
    )
    async with open_session(str(inventory), options) as session:
        app = RollgateApp(session.client, operator="olga", resume_hint="rollgate run ... --resume")
        task = asyncio.create_task(session.engine.run())
        async with app.run_test(size=(160, 50)) as pilot:
            yield session, app, pilot
        if not task.done():
            session.engine.abort("test", "test over")
        await task


async def wait_for(pilot: object, predicate, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)  # type: ignore[attr-defined]
    raise AssertionError("condition not reached")


def decisions(session: Session) -> list[ev.GateDecided]:
    return [e for e in session.engine.history if isinstance(e, ev.GateDecided)]


async def approve_all(app: RollgateApp, pilot: object, session: Session) -> None:
    while session.engine.state.status not in ("complete", "failed", "aborted", "stopped"):
        await wait_for(
            pilot, lambda: app.state.gate is not None or session.engine.finished.is_set()
        )
        if app.state.gate is not None and session.engine.state.gate is not None:
            await pilot.press("a")  # type: ignore[attr-defined]
            await pilot.pause(0.05)  # type: ignore[attr-defined]
            await pilot.press("enter")  # type: ignore[attr-defined]
            await pilot.pause(0.05)  # type: ignore[attr-defined]


async def test_approve_with_a_comment_reaches_the_journal(tmp_path: Path) -> None:
    # every gate is approved by its keys to the end of the run: the downtime and canary gates
    # (6), not SMALL's phase gates too (13, the same question each time)
    inventory = tmp_path / "small-canaries.yaml"
    inventory.write_text(SMALL.read_text().replace("gates: [phase, canary]", "gates: [canary]"))
    async with console(inventory=inventory) as (session, app, pilot):
        await wait_for(pilot, lambda: app.state.gate is not None)
        await pilot.press("a")
        await pilot.press(*"looks good")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(decisions(session)))
        first = decisions(session)[0]
        assert (first.decision, first.operator, first.comment) == ("approve", "olga", "looks good")
        await approve_all(app, pilot, session)
        assert len(decisions(session)) == 6
        assert session.engine.state.status == "complete"
        assert "complete" in str(app.w_header.render())
        await close_end_screen(app, pilot, "run complete")


async def close_end_screen(app: RollgateApp, pilot: object, title: str) -> str:
    """Wait for the end-of-run page, check its title, close it; returns its text."""
    # pushed, and composed: its title is mounted (a busy machine shows the gap between them)
    await wait_for(
        pilot, lambda: isinstance(app.screen, TextScreen) and bool(app.screen.query("Label"))
    )
    assert str(app.screen.query("Label").first().render()) == title
    text = str(app.screen.query_one("#page").render())
    await pilot.press("escape")  # type: ignore[attr-defined]
    await wait_for(pilot, lambda: not isinstance(app.screen, TextScreen))
    return text


async def test_the_end_of_a_run_with_a_skip_names_the_node_not_upgraded() -> None:
    faults = ["fail:two-cmp3:systemctl restart nova-compute"]
    async with console(faults, auto_approve=True) as (session, app, pilot):
        while not session.engine.finished.is_set():
            await wait_for(
                pilot, lambda: app.state.gate is not None or session.engine.finished.is_set()
            )
            gate = app.state.gate
            if gate is not None and gate.kind == "failure":
                await pilot.press("s", *"dead disk", "enter")
            elif gate is not None:
                await pilot.press("a", "enter")
            await pilot.pause(0.05)  # type: ignore[attr-defined]
        text = await close_end_screen(app, pilot, "run complete with deviations")
        assert "two-cmp3 (two): skipped, left disabled in the scheduler" in text
        assert "enable nova-compute on two-cmp3" in text  # skipped with it: said
        assert "took " in text and "deviations: " in text and "skipped steps" in text
        assert "the change record: rollgate report " in text


async def test_reject_stops_the_run() -> None:
    async with console() as (session, app, pilot):
        await wait_for(pilot, lambda: app.state.gate is not None)
        await pilot.press("j", *"not today", "enter")
        await wait_for(pilot, lambda: session.engine.finished.is_set())
        assert session.engine.state.status == "stopped"
        assert decisions(session)[0].comment == "not today"


async def test_space_pauses_and_resumes() -> None:
    async with console() as (session, app, pilot):
        await wait_for(pilot, lambda: app.state.gate is not None)
        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: session.engine.state.status == "running")
        await pilot.press("space")
        await wait_for(pilot, lambda: session.engine.state.status == "paused")
        await wait_for(pilot, lambda: "paused" in str(app.w_header.render()))
        await pilot.press("space")
        await wait_for(pilot, lambda: session.engine.state.status == "running")


async def test_failure_gate_retry_then_skip_with_reason() -> None:
    faults = [
        "fail:one-ctl1:neutron-db-manage upgrade --contract:1:1",
        "fail:two-ctl1:neutron-db-manage upgrade --contract",
    ]
    async with console(faults, auto_approve=True) as (session, app, pilot):

        async def at_failure() -> None:
            while True:
                await wait_for(pilot, lambda: app.state.gate is not None)
                if app.state.gate.kind == "failure":
                    return
                await pilot.press("a", "enter")
                await pilot.pause(0.05)

        await at_failure()
        await pilot.press("r")
        await at_failure()
        await pilot.press("s", "enter")  # an empty reason is refused: the question stays
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        assert app.state.gate is not None and app.state.gate.kind == "failure"
        await pilot.press(*"contract next week", "enter")
        await wait_for(pilot, lambda: app.state.gate is None or app.state.gate.kind != "failure")
        kinds = [(d.decision, d.comment) for d in decisions(session) if d.decision != "approve"]
        assert kinds == [("retry", ""), ("skip", "contract next week")]


async def test_abort_asks_to_confirm() -> None:
    async with console() as (session, app, pilot):
        await wait_for(pilot, lambda: app.state.gate is not None)
        await pilot.press("x", "n")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])  # the question closed
        assert not session.engine.finished.is_set() and session.engine.stopping is None
        await pilot.press("x", "y")
        await wait_for(pilot, lambda: session.engine.finished.is_set())
        assert session.engine.state.status == "aborted"


async def test_node_detail_search_and_theme() -> None:
    async with console(auto_approve=True) as (session, app, pilot):
        await wait_for(pilot, session.engine.finished.is_set, 30)
        await close_end_screen(app, pilot, "run complete")
        tree = app.w_sitemap
        tree.focus()
        node = app.w_sitemap.rows["one-cmp2"]
        tree.select_node(node)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
        assert "node one-cmp2" in str(app.screen.query("Label").first().render())
        assert "disable nova-compute on one-cmp2" in str(app.screen.query_one("#page").render())
        await pilot.press("escape", "slash", *"one-cmp3", "enter")
        await wait_for(
            pilot,
            lambda: (
                bool(app.w_log.lines)
                and all("one-cmp3" in line.lower() for line in app.w_log.lines)
            ),
        )
        before = app.theme
        await pilot.press("t")
        assert app.theme != before and load_settings()["theme"] == app.theme


async def test_quit_with_a_run_active_asks_and_says_how_to_resume() -> None:
    async with console() as (session, app, pilot):
        await wait_for(pilot, lambda: app.state.gate is not None)
        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: session.engine.state.status == "running")
        await pilot.press("q")
        await wait_for(pilot, lambda: bool(app.screen.query("#question")))
        assert "--resume" in str(app.screen.query_one("#question").render())
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        assert app.is_running
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: session.engine.finished.is_set())
        assert session.engine.state.status == "paused"  # resumable: nothing was terminated
        paused = [e for e in session.engine.history if isinstance(e, ev.RunPaused)]
        assert paused[-1].reason == "the operator quit the console; paused, resumable"


async def test_the_palettes_quit_asks_the_same_question() -> None:
    async with console() as (session, app, pilot):
        await wait_for(pilot, lambda: app.state.gate is not None)
        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: session.engine.state.status == "running")
        await app.run_action("quit")  # what ctrl+q and the palette's "Quit" call
        await wait_for(pilot, lambda: bool(app.screen.query("#question")))
        assert "leaving it paused" in str(app.screen.query_one("#question").render())
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        assert app.is_running and not session.engine.finished.is_set()


async def test_site_map_filters_by_state_and_by_name() -> None:
    faults = ["fail:two-cmp2:systemctl restart nova-compute"]
    async with console(faults, auto_approve=True) as (_session, app, pilot):

        async def until_failed() -> None:
            while app.state.nodes["two-cmp2"].status != "failed":
                await wait_for(
                    pilot,
                    lambda: (
                        app.state.gate is not None or app.state.nodes["two-cmp2"].status == "failed"
                    ),
                )
                if app.state.gate is not None and app.state.gate.kind != "failure":
                    await pilot.press("a", "enter")
                    await pilot.pause(0.05)

        await until_failed()
        await pilot.press("v", *"failed", "enter")
        await wait_for(pilot, lambda: list(app.w_sitemap.rows) == ["two-cmp2"])
        await pilot.press("v", *"cmp1", "enter")
        await wait_for(pilot, lambda: sorted(app.w_sitemap.rows) == ["one-cmp1", "two-cmp1"])
        await pilot.press("v", "enter")
        await wait_for(pilot, lambda: len(app.w_sitemap.rows) == len(app.state.nodes))


async def test_log_of_the_selected_node_and_the_command_palette() -> None:
    async with console(auto_approve=True) as (session, app, pilot):
        await wait_for(pilot, session.engine.finished.is_set, 30)
        await close_end_screen(app, pilot, "run complete")
        app.w_sitemap.focus()
        app.w_sitemap.move_cursor(app.w_sitemap.rows["two-cmp3"])
        await pilot.press("l")
        await wait_for(
            pilot,
            lambda: bool(app.w_log.lines) and all(" two-cmp3 " in x for x in app.w_log.lines),
        )
        await pilot.press("l")
        await wait_for(pilot, lambda: any(" one-ctl1 " in x for x in app.w_log.lines))
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Filter nodes")

        def offered() -> bool:  # the palette lists the command it found
            found = app.screen.query(OptionList)
            return bool(found) and any(
                "Filter nodes" in str(getattr(option.prompt, "plain", option.prompt))
                for option in found.first().options
            )

        await wait_for(pilot, offered)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))  # the key's action
        assert "Show nodes whose name contains" in str(app.screen.query_one(Label).render())


async def test_n_adds_a_note_and_space_pauses_from_any_focus() -> None:
    async with console() as (session, app, pilot):
        await wait_for(pilot, lambda: app.state.gate is not None)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"checked the DBA is on call", "enter")

        def olgas() -> list[ev.OperatorNote]:  # rollgate's own notes (the lifecycle) aside
            return [
                e for e in session.engine.history
                if isinstance(e, ev.OperatorNote) and e.operator != "rollgate"
            ]  # fmt: skip

        await wait_for(pilot, lambda: bool(olgas()))
        note = olgas()[0]
        assert (note.operator, note.text) == ("olga", "checked the DBA is on call")
        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: session.engine.state.status == "running")
        app.w_sitemap.focus()  # the tree binds space to expand/collapse for itself
        await pilot.press("space")
        await wait_for(pilot, lambda: session.engine.state.status == "paused")
        await pilot.press("space")
        await wait_for(pilot, lambda: session.engine.state.status == "running")


async def test_the_footer_keeps_help_and_quit_at_80_columns() -> None:
    options = RunOptions(operator="olga", lab_inprocess=True, time_scale=0)
    async with open_session(str(SMALL), options) as session:
        app = RollgateApp(session.client, operator="olga", resume_hint="rollgate run ...")
        task = asyncio.create_task(session.engine.run())
        try:
            async with app.run_test(size=(80, 24)) as pilot:

                def shown() -> set[str]:
                    return set(app.query_one(KeysFooter).visible_descriptions())

                with contextlib.suppress(AssertionError):  # laid out after the compact switch
                    await wait_for(pilot, lambda: {"Help", "Quit", "Pause"} <= shown(), 5)
                assert {"Help", "Quit", "Pause"} <= shown(), shown()
        finally:
            session.engine.abort("test", "test over")
            await task


async def test_the_pipeline_shows_whole_state_words_and_how_each_gate_went() -> None:
    async with console() as (session, app, pilot):
        first = next(p.id for p in session.plan.phases if p.gate)  # scope phases have none
        table = app.w_pipeline

        def cell(column: int) -> str:
            return str(table.get_cell(first, table.ordered_columns[column].key))

        await wait_for(pilot, lambda: cell(1) == "▶ open")
        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: cell(0) == "✔ ok")
        assert cell(1) == "✔ approved"
        assert table.ordered_columns[0].width >= len("↷ ok with deviations")


async def test_enter_on_a_pending_step_shows_its_exact_command() -> None:
    async with console() as (session, app, pilot):
        await wait_for(pilot, lambda: app.state.gate is not None)  # nothing ran yet
        # the scope check ran already: the phase after it, the one at the gate
        gated = next(i for i, p in enumerate(session.plan.phases) if p.gate)
        app.w_pipeline.move_cursor(row=gated)
        await wait_for(pilot, lambda: any(s.command for s in app.w_steps.shown))
        table = app.w_steps
        table.focus()
        table.move_cursor(row=0)
        step = app.w_steps.shown[0]
        assert app.state.steps[step.id].status == "pending"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
        body = str(app.screen.query_one("#page").render())
        assert f"runs: {step.command}" in body and "state pending" in body


async def test_d_at_a_failure_gate_opens_the_failed_nodes_detail() -> None:
    faults = ["fail:one-cmp3:systemctl restart nova-compute"]
    async with console(faults, auto_approve=True) as (_, app, pilot):
        while True:
            await wait_for(pilot, lambda: app.state.gate is not None)
            if app.state.gate.kind == "failure":
                break
            await pilot.press("a", "enter")
            await pilot.pause(0.05)
        # the gate bar shows it within a frame of the gate opening
        await wait_for(pilot, lambda: "d detail of one-cmp3" in str(app.w_gatebar.render()))
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
        assert "node one-cmp3" in str(app.screen.query("Label").first().render())
        body = str(app.screen.query_one("#page").render())
        assert "failed" in body and "restart nova-compute" in body


async def test_the_log_keeps_following_after_l_and_a_resize() -> None:
    async with console() as (_, app, pilot):
        log = app.w_log
        while log.max_scroll_y < 20:  # enough of the run for the log to scroll
            await wait_for(pilot, lambda: app.state.gate is not None or log.max_scroll_y >= 20)
            if app.state.gate is not None and log.max_scroll_y < 20:
                await pilot.press("a", "enter")
                await pilot.pause(0.05)

        async def at_end() -> bool:
            with contextlib.suppress(AssertionError):
                await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y, 3)
            return log.scroll_y == log.max_scroll_y

        assert await at_end()
        app.w_sitemap.focus()
        app.w_sitemap.select_node(app.w_sitemap.rows["one-cmp2"])
        await pilot.press("l")  # one node's log
        assert await at_end()
        await pilot.press("l")  # everything again
        assert await at_end() and log.max_scroll_y > 0
        await pilot.resize_terminal(100, 30)
        assert await at_end()
        await pilot.resize_terminal(160, 50)
        assert await at_end()


async def test_the_header_estimates_the_work_left_against_the_window() -> None:
    options = RunOptions(operator="olga", lab_inprocess=True, time_scale=0)
    async with open_session(str(SMALL), options) as session:
        now = time.time()
        app = RollgateApp(
            session.client, operator="olga", window=(now - 60, now + 600), past_pace=100.0
        )
        task = asyncio.create_task(session.engine.run())
        async with app.run_test(size=(200, 50)) as pilot:
            await wait_for(pilot, lambda: app.state.gate is not None)
            await wait_for(pilot, lambda: "of work left" in str(app.w_header.render()))
            assert "(past the window's end by" in str(app.w_header.render())
        session.engine.abort("test", "test over")
        await task


async def test_the_pane_that_takes_the_keys_is_visible() -> None:
    async with console() as (_, app, pilot):
        for pane in (app.w_pipeline, app.w_steps, app.w_sitemap):
            pane.focus()
            await wait_for(pilot, lambda pane=pane: pane.styles.border_top[0] == "double")
            others = [p for p in (app.w_pipeline, app.w_steps, app.w_sitemap) if p is not pane]
            assert all(p.styles.border_top[0] == "round" for p in others)


class _Quiet(ClientBase):
    """A run that has not started: the plan and no events."""

    read_only = True

    def __init__(self, plan: Plan):
        self.plan = plan

    async def events(self, from_seq: int = 1) -> AsyncIterator[ev.Event]:
        return
        yield

    async def send(self, command: ev.Command) -> None:
        return None


async def test_a_big_cloud_opens_as_a_line_per_site_and_a_filter_opens_its_matches(
    tmp_path: Path,
) -> None:
    # 2 sites of 300 computes: over the 500 nodes a site map shows opened
    plan = build_plan(load_inventory(scale_inventory_file(tmp_path, sites=2, computes=300)))
    app = RollgateApp(_Quiet(plan), operator="olga")
    async with app.run_test(size=(160, 50)) as pilot:
        sites = {str(b.label).split()[0]: b for b in app.w_sitemap.root.children}
        # the site's line counts its nodes (drawn with the first frames)
        await wait_for(pilot, lambda: "pending 301" in str(sites["s01"].label))
        assert not any(b.is_expanded for b in sites.values())
        assert app.w_sitemap.last_line < 10  # a line per site, not 600 lines
        await pilot.press("v", *"s02-cmp000", "enter")
        await wait_for(pilot, lambda: len(app.w_sitemap.rows) == 9)
        (branch,) = app.w_sitemap.root.children
        assert branch.is_expanded  # the matches are shown


async def test_A_approves_a_gate_and_its_twin_at_the_other_site_only_when_asked() -> None:
    """At "start Compute at one?" the gate bar offers A for site two's twin; A lists it, takes
    one comment, and the twin is approved as it opens, journalled as its own decision."""
    async with console() as (session, app, pilot):
        while True:
            await wait_for(pilot, lambda: app.state.gate is not None)
            gate = app.state.gate
            assert gate is not None
            if gate.id == "gate:one/compute":
                break
            if gate.id == "gate:hub/identity":  # keystone's, once: no twin anywhere
                assert "A approve + twin" not in str(app.w_gatebar.render())
            await pilot.press("a", "enter")
            await wait_for(
                pilot, lambda g=gate.id: app.state.gate is None or app.state.gate.id != g
            )
        assert "A approve + twin(s) at two" in str(app.w_gatebar.render())
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        assert "two (gate:two/compute)" in str(app.screen.query("Static").first().render())
        await pilot.press(*"both sites agreed", "enter")
        await wait_for(pilot, lambda: any(e.gate == "gate:two/compute"
                                          for e in decisions(session)), 30)  # fmt: skip
        twin = next(e for e in decisions(session) if e.gate == "gate:two/compute")
        assert (twin.operator, twin.comment) == (
            "olga", "both sites agreed (with its twin gate:one/compute)"
        )  # fmt: skip
