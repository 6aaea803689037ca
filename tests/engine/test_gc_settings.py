"""The library leaves the garbage collector as it found it; entry points tune it and undo it."""

from __future__ import annotations

import gc
from pathlib import Path

from rollgate.core.client import open_journal_client
from rollgate.core.timeline import Timeline
from rollgate.tui.gc_policy import screen_built, tuned_gc
from tests.engine.conftest import drive, make


def collector_settings() -> tuple[object, ...]:
    return (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), list(gc.callbacks))


async def test_a_run_and_a_replay_leave_the_collector_settings_alone(tmp_path: Path) -> None:
    before = collector_settings()
    h = await make(tmp_path)
    try:
        assert await drive(h, lambda gate: None) == "complete"
    finally:
        await h.lab.close()
    h.engine.journal.close()  # type: ignore[union-attr]
    client = open_journal_client(str(tmp_path / "journal.jsonl"))
    timeline = Timeline(client.plan, client.index)
    timeline.state_at(len(timeline))
    assert collector_settings() == before


def test_the_console_tuning_is_undone_on_exit() -> None:
    before = collector_settings()
    with tuned_gc(console=True):
        assert gc.get_threshold()[0] == 10_000
        assert gc.get_freeze_count() > 0
    assert collector_settings() == before


def test_a_console_screen_once_built_is_kept_out_of_full_collections_only_when_tuned() -> None:
    before = gc.get_freeze_count()
    screen_built()  # a console in a test, or embedded: the collector is not ours to change
    assert gc.get_freeze_count() == before
    with tuned_gc(console=True):
        frozen = gc.get_freeze_count()
        site_map = [[] for _ in range(1000)]  # what a console builds and keeps
        screen_built()
        assert gc.get_freeze_count() >= frozen + len(site_map)
    assert gc.get_freeze_count() == before


def test_an_engine_without_a_console_is_tuned_without_freezing_survivors_and_undoes_it() -> None:
    before = collector_settings()
    with tuned_gc():  # a headless or detached engine
        assert gc.get_threshold()[0] == 10_000 and gc.get_freeze_count() > 0
        assert list(gc.callbacks) == before[3]  # no survivors frozen: SSH cycles die later
    assert collector_settings() == before
