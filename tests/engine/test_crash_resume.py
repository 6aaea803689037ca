"""Crash safety: a real `rollgate run` is SIGKILLed at many points; every journal reads back,
`--resume` completes the run, and no step that finished ok ever runs twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import events as ev
from core.journal import read_journal

SMALL = Path(__file__).with_name("small.yaml")
KILL_AFTER_LINES = [2, 5, 20, 45, 80, 120, 170, 230, 300, 380, 460]


def rollgate(state: Path, scale: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(state)}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tui.cli import main; main()",
            "run",
            str(SMALL),
            "--headless",
            "--auto-approve",
            "--lab-inprocess",
            "--time-scale",
            scale,
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def assert_no_ok_step_ran_twice(events: list[ev.Event]) -> None:
    finished_ok: set[str] = set()
    for event in events:
        if isinstance(event, ev.StepStarted):
            assert event.step not in finished_ok, f"{event.step} ran again after finishing ok"
        elif isinstance(event, ev.StepFinished) and event.outcome in ("ok", "warning"):
            finished_ok.add(event.step)


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_at_many_points_then_resume_completes(tmp_path: Path) -> None:
    killed_at: list[int] = []
    for n in KILL_AFTER_LINES:
        state = tmp_path / f"kill-{n}"
        journal = state / "journal.jsonl"
        proc = rollgate(state, "0.003", "--journal", str(journal))
        deadline = time.monotonic() + 60
        while lines_in(journal) < n and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is not None:
            break  # the run finished before this point: later points would too
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(lines_in(journal))
        contents = read_journal(journal)  # reads back whole (a torn tail is tolerated)
        assert contents.events, n
        resumed = rollgate(state, "0", "--resume", str(journal))
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, f"resume after {n} lines failed:\n{out}\n{err}"
        events = read_journal(journal).events
        assert events[-1].type == "run-finished" and events[-1].outcome == "complete"
        assert_no_ok_step_ran_twice(events)
        assert sum(isinstance(e, ev.RunStarted) and e.resumed for e in events) == 1
    assert len(killed_at) >= 10, f"the run ended before enough kill points: {killed_at}"
