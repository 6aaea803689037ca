"""How the console looks at start, at a gate, after a failure and at completion.

The run is recorded once with frozen clocks on the in-process lab, then shown through a
read-only client cut at each moment, so every snapshot is the same on every machine.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.client import ClientBase
from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.inventory import load_inventory
from rollgate.core.lab import Lab
from rollgate.core.plan import build_plan
from rollgate.tui.app import RollgateApp

SMALL = Path(__file__).parents[1] / "engine" / "small.yaml"
SIZE = (150, 44)


def record() -> tuple[object, list[ev.Event]]:
    async def run() -> tuple[object, list[ev.Event]]:
        inventory = load_inventory(SMALL)
        plan = build_plan(inventory)
        lab = await Lab.start(
            inventory,
            time_scale=0,
            serve=False,
            faults=["fail:two-cmp2:systemctl restart nova-compute:1:1"],
        )
        ticks = itertools.count(1_795_000_000)
        engine = Engine(
            plan,
            inventory,
            lab.executor(),
            EngineOptions("olga", "20261124-snapshot", flush_interval=3600, status_interval=0),
            clock=lambda: float(next(ticks)),
            monotonic=lambda: 0.0,
        )
        task = asyncio.create_task(engine.run())
        answered: set[str] = set()
        while not task.done():
            await asyncio.sleep(0)
            gate = engine.state.gate
            if gate is not None and gate.id not in answered:
                answered.add(gate.id)
                kind = "retry" if gate.kind == "failure" else "approve"
                await engine.send(
                    ev.Command(kind, "olga", "ok" if kind == "approve" else "", gate.id)
                )
        await task
        return plan, engine.history

    return asyncio.run(run())


@pytest.fixture(scope="module")
def recorded() -> tuple[object, list[ev.Event]]:
    return record()


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("ROLLGATE_CONFIG_DIR", str(tmp_path))
    time.tzset()


def app_at(recorded: tuple[object, list[ev.Event]], cut: int) -> RollgateApp:
    plan, events = recorded
    shown = events[:cut]
    return RollgateApp(RecordedClient(plan, shown), operator="olga", clock=lambda: shown[-1].time)


class RecordedClient(ClientBase):
    """Recorded events, looking like the driving console (not read-only)."""

    def __init__(self, plan: object, events: list[ev.Event]):
        self.plan, self.header, self._events = plan, {}, events

    async def events(self, from_seq: int = 1) -> AsyncIterator[ev.Event]:
        for event in self._events:
            yield event

    async def send(self, command: ev.Command) -> None:
        raise AssertionError("a snapshot sends nothing")


def index_of(events: list[ev.Event], predicate) -> int:
    return next(i for i, e in enumerate(events) if predicate(e)) + 1


async def settle(pilot) -> None:
    """Until the console has drawn what it was given (a loaded machine takes longer): the
    gate bar and the footer's keys for the open gate, nothing left to draw; then a frame."""
    app = pilot.app
    await pilot.pause(0.1)
    for _ in range(100):
        gate = app.state.gate
        wanted = (gate.id if gate is not None else None, app.state.finished is not None)
        if app._keys_for == wanted and not app._dirty:
            break
        await pilot.pause(0.05)
    # and the tables have scrolled to the phase at work (a frame later on a loaded machine)
    last = None
    for _ in range(40):
        await pilot.wait_for_scheduled_animations()
        now = tuple(w.scroll_offset for w in (app.w_pipeline, app.w_steps, app.w_log))
        if now == last:
            break
        last = now
        await pilot.pause(0.1)
    await pilot.pause(0.1)


def test_console_at_start(recorded, snap_compare) -> None:
    cut = index_of(recorded[1], lambda e: isinstance(e, ev.GateOpened))
    assert snap_compare(app_at(recorded, cut), terminal_size=SIZE, run_before=settle)


def test_console_at_the_canary_gate(recorded, snap_compare) -> None:
    cut = index_of(recorded[1], lambda e: isinstance(e, ev.GateOpened) and e.kind == "canary")
    assert snap_compare(app_at(recorded, cut), terminal_size=SIZE, run_before=settle)


def test_console_after_a_failure(recorded, snap_compare) -> None:
    cut = index_of(recorded[1], lambda e: isinstance(e, ev.GateOpened) and e.kind == "failure")
    assert snap_compare(app_at(recorded, cut), terminal_size=SIZE, run_before=settle)


def test_console_at_completion(recorded, snap_compare) -> None:
    events = recorded[1]
    assert isinstance(events[-1], ev.RunFinished) and events[-1].outcome == "complete"
    assert snap_compare(app_at(recorded, len(events)), terminal_size=SIZE, run_before=settle)


def test_console_at_80x24_at_a_failure_gate(recorded, snap_compare) -> None:
    """A small terminal: the site map folds away; the gate, its choices, the pipeline and the
    log stay readable, and the footer keeps ? and q."""
    cut = index_of(recorded[1], lambda e: isinstance(e, ev.GateOpened) and e.kind == "failure")
    assert snap_compare(app_at(recorded, cut), terminal_size=(80, 24), run_before=settle)


def test_the_end_of_run_summary_at_80x24(recorded, snap_compare) -> None:
    events = recorded[1]
    assert snap_compare(app_at(recorded, len(events)), terminal_size=(80, 24), run_before=settle)


SIZES = [(80, 24), (120, 40), (200, 60)]
size_ids = [f"{w}x{h}" for w, h in SIZES]


def failure_gate(recorded) -> int:
    return index_of(recorded[1], lambda e: isinstance(e, ev.GateOpened) and e.kind == "failure")


@pytest.mark.parametrize("size", SIZES[1:], ids=size_ids[1:])
def test_the_failure_gate_at(recorded, snap_compare, size) -> None:
    """The gate names the failed step, its command and its last output (80x24: above)."""
    assert snap_compare(app_at(recorded, failure_gate(recorded)), terminal_size=size,
                        run_before=settle)  # fmt: skip


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_node_detail_of_the_failed_node_scrolled_to_its_end(recorded, snap_compare, size) -> None:
    """`d` at a failure gate opens the failed node; End reaches its last step (the page
    scrolls: the failed step's command and output are reachable at any size)."""

    async def open_and_scroll(pilot) -> None:
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause(0.2)
        await pilot.press("end")
        await pilot.pause(0.2)

    app = app_at(recorded, failure_gate(recorded))
    assert snap_compare(app, terminal_size=size, run_before=open_and_scroll)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_the_end_page_scrolled_to_its_end(recorded, snap_compare, size) -> None:
    async def scroll(pilot) -> None:
        await settle(pilot)
        await pilot.press("end")
        await pilot.pause(0.2)

    events = recorded[1]
    assert snap_compare(app_at(recorded, len(events)), terminal_size=size, run_before=scroll)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_help_scrolled_to_its_end(recorded, snap_compare, size) -> None:
    async def scroll(pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        await pilot.press("end")
        await pilot.pause(0.2)

    assert snap_compare(app_at(recorded, 3), terminal_size=size, run_before=scroll)


async def test_the_footer_offers_the_keys_of_the_moment_only(recorded) -> None:
    """At a failure gate: retry, skip, abort (no approve); once the run has ended: no
    decision key at all, only leaving, help and the palette."""
    from rollgate.tui.keys_footer import KeysFooter

    for cut, wanted, unwanted in (
        (failure_gate(recorded), {"Retry", "Skip", "Abort"}, {"Approve", "Reject"}),
        (len(recorded[1]), {"Quit", "Help"}, {"Approve", "Retry", "Abort", "Pause", "Note"}),
    ):
        app = app_at(recorded, cut)
        async with app.run_test(size=(150, 44)) as pilot:
            await settle(pilot)
            if cut == len(recorded[1]):
                await pilot.press("escape")  # the end page
                await pilot.pause(0.2)
            shown = set(app.query_one(KeysFooter).visible_descriptions())
            assert wanted <= shown and not (unwanted & shown), shown


async def test_the_quit_question_leaves_the_header_in_view(recorded) -> None:
    """q on an attached console at 80x24: the question sits above the footer; the header's
    run state is still on screen."""
    from rollgate.tui.screens.dialogs import LeaveScreen

    app = app_at(recorded, 40)
    app.client.detachable = True  # type: ignore[misc]  # as attached to an engine
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("escape")  # the recording ends: "engine lost" says so first
        await pilot.pause(0.2)
        await pilot.press("q")
        await pilot.pause(0.5)
        assert isinstance(app.screen, LeaveScreen)
        dialog = app.screen.query_one("#dialog")
        assert dialog.region.y >= 2  # below the header's two lines
        assert dialog.region.bottom <= 23  # above the footer
