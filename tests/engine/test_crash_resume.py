"""Crash safety: a real `rollgate run` is SIGKILLed at many points; every journal reads back,
`--resume` completes the run, and no step that finished ok ever runs twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.journal import read_journal

SMALL = Path(__file__).with_name("small.yaml")
KILL_AFTER_LINES = [2, 20, 45, 80, 120, 170, 230, 300, 460]  # from the header to the end


def rollgate(state: Path, scale: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(state)}
    return subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-m",
            "rollgate",
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
    """Each kill point is its own run (own state), two at a time: one core each."""

    def kill_then_resume(n: int) -> int | None:
        """Lines in the journal when SIGKILL landed, or None when the run ended first."""
        state = tmp_path / f"kill-{n}"
        journal = state / "journal.jsonl"
        proc = rollgate(state, "0.003", "--journal", str(journal))
        deadline = time.monotonic() + 60
        while lines_in(journal) < n and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is not None:
            proc.communicate()
            return None  # the run finished before this point
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        at = lines_in(journal)
        contents = read_journal(journal)  # reads back whole (a torn tail is tolerated)
        assert contents.events, n
        resumed = rollgate(state, "0", "--resume", str(journal))
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, f"resume after {n} lines failed:\n{out}\n{err}"
        events = read_journal(journal).events
        assert events[-1].type == "run-finished" and events[-1].outcome == "complete"
        assert_no_ok_step_ran_twice(events)
        assert sum(isinstance(e, ev.RunStarted) and e.resumed for e in events) == 1
        return at

    with ThreadPoolExecutor(max_workers=2) as pool:
        killed_at = [at for at in pool.map(kill_then_resume, KILL_AFTER_LINES) if at is not None]
    assert len(killed_at) >= 8, f"the run ended before enough kill points: {killed_at}"


def at_a_terminal(state: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    """`rollgate run --headless` whose standard input is a terminal (a pty), so its gates
    wait for an answer; returns the process and the pty's master end to type into."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(state)}
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "rollgate", "run", *args],
        env=env,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(slave)
    return proc, master


def wait_for_open_gate(
    journal: Path, proc: subprocess.Popen[str], after: int = 0, other_than: str = ""
) -> ev.Event:
    """A gate opened after event `after` and not decided, once the run waits at it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        events = read_journal(journal).events[after:] if journal.exists() else []
        decided = {e.gate for e in events if isinstance(e, ev.GateDecided)}
        waiting = [
            e
            for e in events
            if isinstance(e, ev.GateOpened) and e.gate not in decided and e.gate != other_than
        ]
        if waiting:
            return waiting[-1]
        time.sleep(0.02)
    raise AssertionError(f"no gate opened (exit {proc.poll()})")


@pytest.mark.integration
def test_sigkill_at_a_failure_budget_gate_then_resume_asks_it_again(tmp_path: Path) -> None:
    # budget 1: one-cmp2 fails within it, one-cmp4 spends it and its gate opens; the driver
    # is SIGKILLed there. The resumed driver must ask the same gate, with the spent budget
    # restored, and never start the failed step again by itself.
    journal = tmp_path / "journal.jsonl"
    args = [
        str(SMALL),
        "--headless",
        "--auto-approve",
        "--lab-inprocess",
        "--journal",
        str(journal),
        "--fault",
        "fail:one-cmp2:systemctl restart nova-compute",
        "--fault",
        "fail:one-cmp4:systemctl restart nova-compute",
    ]
    proc, master = at_a_terminal(tmp_path, *args)
    try:
        gate = wait_for_open_gate(journal, proc)
        assert gate.kind == "failure" and "one-cmp4" in gate.title  # type: ignore[attr-defined]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        os.close(master)
    before = read_journal(journal).events
    failed_step = gate.step  # type: ignore[attr-defined]

    proc, master = at_a_terminal(tmp_path, *args[:-4], "--resume", str(journal), *args[-4:])
    try:
        again = wait_for_open_gate(journal, proc, after=len(before))
        assert again.gate == gate.gate  # type: ignore[attr-defined]
        assert "2 failed nodes (budget 1)" in again.title  # type: ignore[attr-defined]
        os.write(master, b"skip hypervisor to be replaced\n")
        end_of_phase = wait_for_open_gate(journal, proc, len(before), other_than=gate.gate)  # type: ignore[attr-defined]
        assert "one-cmp2" in end_of_phase.title  # type: ignore[attr-defined]
        os.write(master, b"skip hypervisor to be replaced\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
    assert proc.returncode == 3, out + err  # complete with deviations
    events = read_journal(journal).events[len(before) :]
    assert not [e for e in events if isinstance(e, ev.StepStarted) and e.step == failed_step]
    assert events[-1].outcome == "complete with deviations"  # type: ignore[attr-defined]
    assert_no_ok_step_ran_twice(read_journal(journal).events)
