"""Window times without a zone are UTC wherever they are used, whatever the local zone."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollgate.core.inventory import load_inventory

HERE = Path(__file__).parent / "inventory"


def test_a_window_without_a_zone_is_utc_in_a_new_york_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (HERE / "base.yaml").read_text()
    text = text.replace("2026-11-28T22:00:00Z", "2026-11-28T22:00:00")
    text = text.replace("2026-11-29T04:00:00Z", "2026-11-29 04:00")
    inventory_file = tmp_path / "naive.yaml"
    inventory_file.write_text(text)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        window = load_inventory(inventory_file).window
        assert window is not None
        # the console's header and the engine use these epoch seconds
        seconds = (window.start.timestamp(), window.end.timestamp())
    finally:
        monkeypatch.undo()
        time.tzset()
    assert seconds == (
        datetime(2026, 11, 28, 22, tzinfo=UTC).timestamp(),
        datetime(2026, 11, 29, 4, tzinfo=UTC).timestamp(),
    )
