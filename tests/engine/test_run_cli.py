"""`rollgate run --headless` and `rollgate runs` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = Path(__file__).with_name("small.yaml")


def rollgate(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-c", "from tui.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.integration
def test_headless_auto_approve_run_completes_and_is_listed(tmp_path: Path) -> None:
    out = rollgate(
        tmp_path,
        "run",
        str(SMALL),
        "--headless",
        "--auto-approve",
        "--lab-inprocess",
        "--operator",
        "zoe",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "run complete" in out.stdout
    assert "--auto-approve: every approval gate is approved" in out.stdout
    listing = rollgate(tmp_path, "runs")
    assert "small" in listing.stdout and "complete" in listing.stdout


@pytest.mark.integration
def test_a_gate_without_a_terminal_aborts_with_exit_1_and_says_how_to_resume(
    tmp_path: Path,
) -> None:
    out = rollgate(tmp_path, "run", str(SMALL), "--headless", "--lab-inprocess")
    assert out.returncode == 1
    assert "no terminal to ask at this gate" in out.stdout
    assert "resume with: rollgate run" in out.stdout


@pytest.mark.integration
def test_resume_refuses_when_the_inventory_changed(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(SMALL.read_text())
    journal = tmp_path / "j.jsonl"
    first = rollgate(
        tmp_path, "run", str(inventory), "--headless", "--lab-inprocess", "--journal", str(journal)
    )
    assert first.returncode == 1
    inventory.write_text(SMALL.read_text().replace("batch_size: 2", "batch_size: 3"))
    out = rollgate(
        tmp_path, "run", str(inventory), "--headless", "--lab-inprocess", "--resume", str(journal)
    )
    assert out.returncode == 2
    assert "changed since run" in out.stderr and "Traceback" not in out.stderr


def test_unknown_run_to_resume_is_a_clear_error(tmp_path: Path) -> None:
    out = rollgate(tmp_path, "run", str(SMALL), "--headless", "--resume", "nope")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: no run or journal 'nope'; list runs with "
        "`rollgate runs` or give the path of a journal.jsonl"
    )
