"""The journal is the run: a write that fails, or a journal that vanishes or shrinks, stops the
run at once, says so in one line, and leaves something that reads back whole."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core import events as ev
from core.journal import read_journal
from tests.cli_helpers import rollgate
from tests.engine.conftest import drive, make

SMALL = Path(__file__).with_name("small.yaml")


@pytest.fixture
def small_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 128 KiB tmpfs: the small cloud's journal (~180 KB) fills it mid-run."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs (a disk that fills up)")
    where = tmp_path / "small-disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(where)])
    if done.returncode != 0:
        pytest.skip("this machine cannot mount a tmpfs")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.integration
def test_a_full_disk_stops_the_run_and_it_resumes_once_there_is_space(
    tmp_path: Path, small_tmpfs: Path
) -> None:
    journal = small_tmpfs / "journal.jsonl"
    args = ["run", str(SMALL), "--headless", "--auto-approve", "--lab-inprocess"]
    out = rollgate(tmp_path, *args, "--journal", str(journal))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    said = [line for line in out.stdout.splitlines() if "could not be written" in line]
    assert said and "No space left on device" in said[0]
    contents = read_journal(journal)  # reads back whole: no line glued to another
    assert contents.events and not contents.torn
    last = contents.events[-1].seq
    assert [e.seq for e in contents.events] == list(range(1, last + 1))
    subprocess.run(["mount", "-o", "remount,size=2m", str(small_tmpfs)], check=True)
    again = rollgate(tmp_path, *args, "--resume", str(journal))
    assert again.returncode == 0, again.stdout + again.stderr
    events = read_journal(journal).events
    assert events[-1].outcome == "complete"  # type: ignore[attr-defined]
    finished_ok: set[str] = set()
    for event in events:
        if isinstance(event, ev.StepStarted):
            assert event.step not in finished_ok, f"{event.step} ran again"
        elif isinstance(event, ev.StepFinished) and event.outcome == "ok":
            finished_ok.add(event.step)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
async def test_a_journal_deleted_or_truncated_mid_run_stops_it(tmp_path: Path, damage: str) -> None:
    h = await make(tmp_path)
    journal = tmp_path / "journal.jsonl"

    async def damage_after_a_while() -> None:
        while len(h.events(ev.StepFinished)) < 20:
            await asyncio.sleep(0.001)
        if damage == "delete":
            journal.unlink()
        else:
            os.truncate(journal, journal.stat().st_size // 2)

    damaging = asyncio.create_task(damage_after_a_while())
    try:
        assert await drive(h, lambda g: None) == "failed"
    finally:
        damaging.cancel()
        await h.lab.close()
    error = h.engine.state.error
    what = "was deleted or replaced" if damage == "delete" else "was truncated"
    assert what in error and "the run stopped" in error and "\n" not in error
    started = len(h.events(ev.StepStarted))
    assert started < len(h.plan.steps)  # no new work after it was noticed
    recovered = read_journal(tmp_path / "journal.jsonl.recovered")
    assert [e.to_dict() for e in recovered.events] == [e.to_dict() for e in h.engine.history]
    assert isinstance(recovered.events[-1], ev.RunFinished)
    assert oct(os.stat(tmp_path / "journal.jsonl.recovered").st_mode & 0o777) == "0o600"
