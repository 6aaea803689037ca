"""The engine's history packs old events: a late reader and a recovered journal still get
every event, equal to what the journal holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core import history
from rollgate.core.journal import read_journal
from tests.engine.conftest import drive, make


async def test_a_late_reader_and_a_recovered_journal_get_every_packed_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "BLOCK", 16)  # the small cloud's run spans many blocks
    h = await make(tmp_path)
    try:
        assert await drive(h, lambda g: None) == "complete"
    finally:
        await h.lab.close()
    kept = h.engine.history
    assert kept._packed, "nothing was packed: the test would prove nothing"
    on_disk = [e.to_dict() for e in read_journal(tmp_path / "journal.jsonl").events]
    assert [e.to_dict() for e in kept] == on_disk
    assert kept[-1].to_dict() == on_disk[-1] and kept[3].to_dict() == on_disk[3]
    assert [e.to_dict() for e in kept[40:60]] == on_disk[40:60]

    # a console attaching late from event 37 gets 37 onwards, in order, packed ones included
    late = [e.seq async for e in h.client.events(37)]
    assert late == list(range(37, len(on_disk) + 1))

    # a journal lost at the end is written back whole from the packed history
    os.unlink(tmp_path / "journal.jsonl")
    recovered = read_journal(h.engine.journal.recover(kept))  # type: ignore[union-attr]
    assert [e.to_dict() for e in recovered.events] == on_disk
    assert isinstance(recovered.events[-1], ev.RunFinished)
