"""Replay in the console: the timeline moves the same widgets, and nothing can be changed."""

from __future__ import annotations

import pytest

from rollgate.core import events as ev
from rollgate.core.client import open_journal_client
from rollgate.core.state import fold
from rollgate.tui.app import RollgateApp
from rollgate.tui.keys_footer import KeysFooter
from rollgate.tui.replay import ReplayApp
from rollgate.tui.screens.dialogs import TextScreen
from tests.sample_run import SHIPPED


async def wait_for(pilot, predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROLLGATE_CONFIG_DIR", str(tmp_path))


async def test_timeline_keys_move_through_the_run() -> None:
    client = open_journal_client(str(SHIPPED))
    events = client.all_events()
    app = ReplayApp(client)
    async with app.run_test(size=(150, 44)) as pilot:
        await wait_for(pilot, lambda: app.position == len(events))
        assert app.state.status == "complete with deviations"
        await pilot.press("home")
        assert app.position == 0 and app.state.status == "pending"
        await pilot.press("e")  # to the first failure
        assert events[app.position - 1].outcome == "failed"  # type: ignore[attr-defined]
        assert app.state.steps[events[app.position - 1].step].status == "failed"  # type: ignore[attr-defined]
        await pilot.press("n")  # the gate that failure raises
        gate = events[app.position - 1]
        assert isinstance(gate, ev.GateOpened | ev.GateDecided)
        await pilot.press("left")
        here = app.position
        assert app.state.last_seq == fold(client.plan, events[:here]).last_seq
        await pilot.press("a")  # read-only: nothing is sent anywhere
        await pilot.press("space")
        await wait_for(pilot, lambda: app.position > here)  # playing moves forward
        await pilot.press("space", "end")
        assert app.position == len(events)
        assert app.state.gates[0].operator == "alice"


async def test_a_line_corrupted_after_the_run_ends_the_replay_with_its_error(tmp_path) -> None:
    lines = SHIPPED.read_text().splitlines(keepends=True)
    lines[300] = '{"type":"no-such-event","seq":300}\n'  # valid JSON, not an event
    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(lines))
    app = ReplayApp(open_journal_client(str(journal)))  # opens lazily: the line is not read yet
    async with app.run_test(size=(150, 44)) as pilot:
        await wait_for(pilot, lambda: app.return_code is not None)
    assert app.return_code == 2
    assert app.error is not None and ":301: damaged record" in app.error


async def test_watching_a_journal_with_a_corrupt_line_ends_with_its_error(tmp_path) -> None:
    lines = SHIPPED.read_text().splitlines(keepends=True)
    lines[300] = '{"type":"no-such-event","seq":300}\n'
    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(lines))
    app = RollgateApp(open_journal_client(str(journal), follow=True), operator="watching")
    async with app.run_test(size=(150, 44)) as pilot:
        await wait_for(pilot, lambda: app.return_code is not None)
    assert app.return_code == 2
    assert app.error is not None and ":301: damaged record" in app.error


async def test_replay_help_lists_the_timeline_keys_and_the_footer_fits_80_columns() -> None:
    app = ReplayApp(open_journal_client(str(SHIPPED)))
    async with app.run_test(size=(80, 24)) as pilot:

        def footer() -> str:  # the console's own screen: the end-of-run page may be on top
            return str(app.screen_stack[0].query_one(KeysFooter).render())

        await wait_for(pilot, lambda: "Quit" in footer())
        assert "Quit" in footer() and "Help" in footer() and "Play" in footer()
        if app.screen is not app.screen_stack[0]:
            await pilot.press("escape")  # close the end-of-run page
            await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
        text = str(app.screen.query_one("#page").render())
        for key in ("play / pause", "next / previous gate", "next / previous failure",
                    "go to a time", "start / end of the run"):  # fmt: skip
            assert key in text
        assert "approve the open gate" not in text  # nothing to decide in a replay


async def test_watch_says_who_drives_the_run_and_from_where() -> None:
    app = RollgateApp(open_journal_client(str(SHIPPED)), operator="watching (read-only)")
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: "driven by alice@lab" in str(app.w_header.render()))
        assert "WATCHING (READ-ONLY)" in str(app.w_header.render())
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
        await pilot.press("escape")  # the finished run's summary
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        footer = str(app.screen.query_one(KeysFooter).render())
        assert "Quit" in footer
        assert not any(word in footer for word in ("Approve", "Reject", "Retry", "Skip", "Abort"))
        await pilot.press("a")  # no decision dialog opens for a watcher (nothing to wait for:
        await pilot.pause(0.1)  # a short look that nothing happened)
        assert app.screen is app.screen_stack[0]


async def test_a_click_on_a_footer_key_presses_it() -> None:
    app = RollgateApp(open_journal_client(str(SHIPPED)), operator="watching (read-only)")
    async with app.run_test(size=(120, 30)) as pilot:
        # the end-of-run page opens once the journal is read
        await wait_for(pilot, lambda: app.screen is not app.screen_stack[0])
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0])
        footer = app.query_one(KeysFooter)
        where = str(footer.render()).index(" ? Help")
        await pilot.click(KeysFooter, offset=(where + 1, 0))
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
        assert app.screen.title_text == "Keys"
