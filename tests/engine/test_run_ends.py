"""A run always ends: SIGTERM and abort end a detached engine with run-finished within 10 s,
whether it waits at a gate, is paused, or runs a step that hangs."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.journal import read_journal
from tests.cli_helpers import rollgate
from tests.engine.conftest import SMALL

pytestmark = pytest.mark.integration

STATES = {
    # the first phase gate, undecided
    "at-a-gate": [],
    # keystone's doctor check hangs (its step timeout is a minute here)
    "running-a-hung-step": ["--auto-approve", "--fault", "hang:key1:keystone-manage doctor"],
    # paused from the command line while waiting at the first gate
    "paused": [],
}


def start(state: Path, *extra: str) -> tuple[str, Path]:
    inventory = state.parent / "small.yaml"  # steps may take a minute: longer than any wait
    inventory.write_text(SMALL.read_text().replace("step_timeout: 5", "step_timeout: 60"))
    out = rollgate(state, "run", str(inventory), "--detach", "--lab-inprocess", "--time-scale",
                   "0", *extra)  # fmt: skip
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    return run_id, state / "runs" / run_id


def status(state: Path, run_id: str) -> dict:
    out = rollgate(state, "status", run_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def until(probe, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    answer = probe()
    while not answer and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = probe()
    return answer


def last_event(journal: Path) -> ev.Event | None:
    events = read_journal(journal).events
    return events[-1] if events else None


@pytest.mark.parametrize("how", ["sigterm", "abort"])
@pytest.mark.parametrize("where", list(STATES))
def test_the_engine_ends_with_run_finished_within_10_s(
    tmp_path: Path, where: str, how: str
) -> None:
    state = tmp_path / "state"
    run_id, run_dir = start(state, *STATES[where])
    journal = run_dir / "journal.jsonl"
    if where == "running-a-hung-step":
        assert until(lambda: any(
            isinstance(e, ev.StepStarted) and "doctor" in e.step
            for e in read_journal(journal).events
        ))  # fmt: skip
    else:
        assert until(lambda: status(state, run_id)["gate"] is not None)
    if where == "paused":
        assert rollgate(state, "pause", run_id).returncode == 0
        assert until(lambda: status(state, run_id)["state"] == "paused")
    asked = time.monotonic()
    if how == "sigterm":
        os.kill(int((run_dir / "engine.pid").read_text()), signal.SIGTERM)
    else:
        assert rollgate(state, "abort", run_id, "--comment", "end it").returncode == 0
    assert until(lambda: isinstance(last_event(journal), ev.RunFinished), 10), (
        f"no run-finished {time.monotonic() - asked:.1f} s after {how} {where}"
    )
    finished = last_event(journal)
    assert isinstance(finished, ev.RunFinished)
    assert finished.outcome == ("paused" if how == "sigterm" else "aborted")
    assert until(lambda: not (run_dir / "engine.pid").exists(), 10)  # the process is gone too
