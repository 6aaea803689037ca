"""The maintenance window is guarded: a start outside it is asked for (console) or refused
(headless) unless --outside-window says so, --auto-approve never approves it, and no phase
starts past the end without an explicit approval."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rollgate.core import events as ev
from rollgate.core.window import Window
from tests.cli_helpers import rollgate
from tests.engine.conftest import SMALL, drive, make

PAST = "window: {start: 2020-01-01T22:00:00Z, end: 2020-01-02T04:00:00Z}\n"


def inventory_with(tmp_path: Path, window: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(SMALL.read_text() + window)
    return path


def test_headless_refuses_to_start_outside_the_window_in_one_line(tmp_path: Path) -> None:
    out = rollgate(
        tmp_path, "run", str(inventory_with(tmp_path, PAST)), "--headless", "--auto-approve",
        "--lab-inprocess",
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(
        "error: the maintenance window was 2020-01-01T22:00Z to 2020-01-02T04:00Z and it is now "
    )
    assert line.endswith(": over; start inside it, or add --outside-window to run anyway")
    runs = tmp_path / "runs"  # ROLLGATE_STATE_DIR is tmp_path
    assert not runs.exists() or not any(runs.iterdir())  # a refused start leaves nothing


def test_outside_window_starts_and_says_so_in_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    out = rollgate(
        tmp_path, "run", str(inventory_with(tmp_path, PAST)), "--headless", "--auto-approve",
        "--lab-inprocess", "--outside-window", "--journal", str(journal),
    )  # fmt: skip
    assert "started outside the window with --outside-window" in journal.read_text()
    # past the end: the first phase asks, and no terminal means the run stops there, paused
    assert "WINDOW OVER: the maintenance window was" in out.stdout
    assert out.returncode == 1
    import json

    report = rollgate(tmp_path, "report", str(journal), "--format", "json")
    window = json.loads(report.stdout)["window"]
    assert window["start"].startswith("2020-01-01T22:00") and window["inside"] is False
    markdown = rollgate(tmp_path, "report", str(journal)).stdout
    assert "the run went OUTSIDE it" in markdown


def test_a_window_that_starts_now_never_refuses_the_start(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    out = rollgate(
        tmp_path, "run", str(inventory_with(tmp_path, "window: {start: now, hours: 6}\n")),
        "--headless", "--auto-approve", "--lab-inprocess", "--journal", str(journal),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "; inside the window (it ends " in out.stdout  # the end of the run says so
    markdown = rollgate(tmp_path, "report", str(journal)).stdout
    assert "the run stayed inside it" in markdown


async def test_auto_approve_never_approves_a_start_outside_the_window() -> None:
    h = await make(auto_approve=True)
    now = time.time()
    h.engine.options = dataclasses.replace(
        h.engine.options, window=Window(now + 3600, now + 7200, relative=False)
    )
    asked: list[ev.GateOpened] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "window":
            asked.append(gate)
            return ev.Command("reject", "olga", "not yet", gate.gate)
        return None

    try:
        assert await drive(h, decide) == "stopped"
    finally:
        await h.lab.close()
    assert len(asked) == 1 and "not open: start the run outside it?" in asked[0].title
    decided = [e for e in h.events(ev.GateDecided) if e.gate == asked[0].gate]
    assert decided[0].operator == "olga"  # a person, not auto-approve
    # only the reading of each site's services against the inventory ran before the question
    assert {e.phase.split("/")[1] for e in h.events(ev.PhaseStarted)} == {"scope"}


async def test_past_the_end_one_approval_lets_the_phases_go_on() -> None:
    h = await make(auto_approve=True)
    now = time.time()
    h.engine.options = dataclasses.replace(
        h.engine.options,
        window=Window(now - 7200, now - 3600, relative=False),
        outside_window=True,
    )
    asked: list[ev.GateOpened] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "window":
            asked.append(gate)
            return ev.Command("approve", "olga", "change 4711 extended", gate.gate)
        return None

    try:
        assert await drive(h, decide) == "complete"
    finally:
        await h.lab.close()
    assert len(asked) == 1 and asked[0].title.startswith("WINDOW OVER: ")
    notes = [e.text for e in h.events(ev.OperatorNote)]
    assert any("--outside-window" in n for n in notes)
