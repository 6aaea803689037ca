"""Timeline checkpoints beside the journal: written by the engine as it runs, used by a replay
only where they match the journal, rebuilt by a replay when missing or stale."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from rollgate.core import checkpoints
from rollgate.core import timeline as timeline_module
from rollgate.core.checkpoints import timeline_path
from rollgate.core.client import open_journal_client
from rollgate.core.engine import record
from rollgate.core.state import fold
from rollgate.core.timeline import journal_timeline
from tests.engine.conftest import drive, make
from tests.engine.test_timeline import snapshot

EVERY = 40


@pytest.fixture
def finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finished run of the small cloud whose engine checkpointed every 40 events."""
    monkeypatch.setattr(record, "EVERY", EVERY)
    monkeypatch.setattr(timeline_module, "EVERY", EVERY)

    async def run() -> None:
        h = await make(tmp_path)
        try:
            assert await drive(h, lambda g: None) == "complete"
        finally:
            await h.lab.close()

    import asyncio

    asyncio.run(run())
    return tmp_path / "journal.jsonl"


def seeks_match_folding(journal: Path) -> int:
    """Seek the journal's timeline around; every state equals folding. Returns how many
    checkpoints it took from the file."""
    client = open_journal_client(str(journal))
    events = client.all_events()
    timeline = journal_timeline(client.plan, client.index)
    taken = sum(1 for c in timeline._checkpoints)
    for k in (len(events) // 2, 7, len(events), EVERY * 3 + 5, 0, len(events) - 1):
        assert snapshot(timeline.view_at(k)) == snapshot(fold(client.plan, events[:k])), k
    return taken


def records(journal: Path) -> list[bytes]:
    return checkpoints.timeline_path(journal).read_bytes().splitlines()


def test_the_engine_writes_checkpoints_a_replay_uses_and_they_hold_the_state(
    finished_run: Path,
) -> None:
    events = len(open_journal_client(str(finished_run)).all_events())
    path = checkpoints.timeline_path(finished_run)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(records(finished_run)) - 1 == events // EVERY  # a header, then one per mark
    assert seeks_match_folding(finished_run) == events // EVERY


@pytest.mark.parametrize("damage", ["missing", "edited", "torn", "another-run"])
def test_damaged_checkpoints_are_not_trusted_and_the_replay_writes_them_again(
    finished_run: Path, damage: str
) -> None:
    path = checkpoints.timeline_path(finished_run)
    lines = records(finished_run)
    whole = len(lines) - 1
    if damage == "missing":
        path.unlink()
    elif damage == "edited":  # the third checkpoint says a step failed that did not
        assert b'"ok"' in lines[3]
        lines[3] = lines[3].replace(b'"ok"', b'"failed"', 1)
        path.write_bytes(b"\n".join(lines) + b"\n")
    elif damage == "torn":  # the process died mid-write
        path.write_bytes(b"\n".join(lines[:4]) + b"\n" + lines[4][:50])
    else:  # the file of another run beside this journal
        header = orjson.loads(lines[0])
        lines[0] = orjson.dumps({**header, "run_id": "someone-else"})
        path.write_bytes(b"\n".join(lines) + b"\n")
    # the states are right whatever the file says; the damaged part is not used...
    taken = seeks_match_folding(finished_run)
    assert taken == {"missing": 0, "edited": 2, "torn": 3, "another-run": 0}[damage]
    # ...and folding to the end wrote them again, whole, for the next replay
    assert len(records(finished_run)) - 1 == whole
    assert seeks_match_folding(finished_run) == whole


def test_checkpoints_read_back_hold_one_copy_of_each_output_line(finished_run: Path) -> None:
    """Computes print the same lines; a replay of thousands holds each once (its memory)."""
    client = open_journal_client(str(finished_run))
    timeline = journal_timeline(client.plan, client.index)
    lines: dict[str, list[str]] = {}
    tail = checkpoints.CHANGING.index("tail")
    for checkpoint in timeline._checkpoints:
        for version in checkpoint.steps.values():
            for line in version[tail]:  # type: ignore[union-attr]
                lines.setdefault(line, []).append(line)
    repeated = [copies for copies in lines.values() if len(copies) > 1]
    assert repeated, "no line is in two checkpoints: the test would prove nothing"
    assert all(all(c is copies[0] for c in copies) for copies in repeated)


def test_a_replay_that_folds_without_checkpoints_holds_one_copy_of_each_output_line(
    finished_run: Path,
) -> None:
    """A journal from before checkpoints (or whose file was lost): the replay folds every
    event and takes its own; the steps' tails, its cursor's and its checkpoints', share their
    lines as the file's do (its memory: 420 -> 351 MB at 1,000,000 events)."""
    timeline_path(finished_run).unlink()
    client = open_journal_client(str(finished_run))
    timeline = journal_timeline(client.plan, client.index)
    state = timeline.view_at(len(timeline))
    tail = checkpoints.CHANGING.index("tail")
    lines: dict[str, list[str]] = {}
    held = [s.tail for s in state.steps.values()]
    held += [version[tail] for c in timeline._checkpoints for version in c.steps.values()]
    for step_tail in held:
        for line in step_tail:  # type: ignore[union-attr]
            lines.setdefault(line, []).append(line)
    repeated = [copies for copies in lines.values() if len(copies) > 1]
    assert len(repeated) > 10, "few lines repeat: the test would prove little"
    assert all(all(c is copies[0] for c in copies) for copies in repeated)
    assert timeline_path(finished_run).exists()  # and it wrote them for the next replay
