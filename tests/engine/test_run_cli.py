"""`rollgate run --headless` and `rollgate runs` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import rollgate

SMALL = Path(__file__).with_name("small.yaml")


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
def test_a_gate_without_a_terminal_stops_paused_with_exit_1_and_says_how_to_decide(
    tmp_path: Path,
) -> None:
    from rollgate.core import events as ev
    from rollgate.core.journal import read_journal

    journal = tmp_path / "j.jsonl"
    out = rollgate(
        tmp_path, "run", str(SMALL), "--headless", "--lab-inprocess", "--journal", str(journal)
    )
    assert out.returncode == 1
    assert "no terminal to decide this phase gate" in out.stdout
    assert "--auto-approve" not in out.stdout.split("no terminal")[1]
    assert "resume with: rollgate run" in out.stdout
    events = read_journal(journal).events
    assert not any(isinstance(e, ev.RunAborted | ev.GateDecided) for e in events)
    assert events[-1].outcome == "paused"  # type: ignore[attr-defined]


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


@pytest.mark.integration
def test_ctrl_c_without_a_terminal_pauses_after_running_steps_and_resumes_later(
    tmp_path: Path,
) -> None:
    import signal
    import time

    from rollgate.core import events as ev
    from rollgate.core.journal import read_journal

    journal = tmp_path / "j.jsonl"
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
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
            "0.01",
            "--journal",
            str(journal),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while journal.exists() is False or journal.read_text().count("step-finished") < 5:
        assert time.monotonic() < deadline and proc.poll() is None, "the run did not get going"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err
    events = read_journal(journal).events
    kinds = [type(e) for e in events]
    paused = kinds.index(ev.RunPaused)
    assert ev.RunAborted not in kinds
    assert next(e for e in events if isinstance(e, ev.RunPaused)).reason.startswith("Ctrl-C")
    # the steps that were running finished; none was terminated
    assert not [e for e in events if isinstance(e, ev.StepFinished) and e.outcome != "ok"]
    started = {e.step for e in events if isinstance(e, ev.StepStarted)}
    finished = {e.step for e in events if isinstance(e, ev.StepFinished)}
    assert started == finished and kinds.index(ev.RunFinished) > paused
    assert events[-1].outcome == "paused"  # type: ignore[attr-defined]
    assert "resume with: rollgate run" in out
    again = rollgate(
        tmp_path,
        "run",
        str(SMALL),
        "--headless",
        "--auto-approve",
        "--lab-inprocess",
        "--resume",
        str(journal),
    )
    assert again.returncode == 0, again.stdout + again.stderr
    events = read_journal(journal).events
    runs = [e.step for e in events if isinstance(e, ev.StepStarted)]
    assert len(runs) == len(set(runs)), "a finished step ran again after resume"


@pytest.mark.integration
def test_the_demo_inventory_upgrades_over_ssh_and_http(tmp_path: Path) -> None:
    demo = Path(__file__).parents[2] / "sample_inventory" / "lab-two-sites.yaml"
    text = demo.read_text().replace("127.42.", "127.43.") + f"\n  state_dir: {tmp_path}/lab\n"
    inventory = tmp_path / "lab-two-sites.yaml"
    inventory.write_text(text)
    out = rollgate(
        tmp_path, "run", str(inventory), "--headless", "--auto-approve", "--time-scale", "0"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "lab: nodes answer SSH on loopback" in out.stdout
    assert "run complete" in out.stdout


def headless_at_a_terminal(state: Path, *args: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`rollgate run --headless` with a terminal (pty) as its input and a file as its output."""
    import pty

    master, slave = pty.openpty()
    out = state / "out.txt"
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(state)}
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "rollgate", "run", *args],
            env=env,
            stdin=slave,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    os.close(slave)
    return proc, master, out


def wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes], count: int = 1) -> None:
    import time

    deadline = time.monotonic() + 60
    while path.read_text(errors="replace").count(text) < count:
        assert proc.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"never printed {text!r}"
        time.sleep(0.02)


@pytest.mark.integration
def test_ctrl_c_at_a_gate_prompt_asks_and_quit_leaves_the_run_paused(tmp_path: Path) -> None:
    import signal

    from rollgate.core import events as ev
    from rollgate.core.journal import read_journal

    journal = tmp_path / "j.jsonl"
    proc, master, out = headless_at_a_terminal(
        tmp_path, str(SMALL), "--headless", "--lab-inprocess", "--journal", str(journal)
    )
    try:
        wait_for_text(out, "decision [approve/reject]", proc)  # the options are shown
        proc.send_signal(signal.SIGINT)
        wait_for_text(out, "[q]uit leaving the run paused", proc)
        os.write(master, b"q\n")
        assert proc.wait(timeout=60) == 1
    finally:
        os.close(master)
    events = read_journal(journal).events
    assert not any(isinstance(e, ev.RunAborted | ev.GateDecided) for e in events)
    assert events[-1].outcome == "paused"  # type: ignore[attr-defined]
    assert "resume with: rollgate run" in out.read_text()


@pytest.mark.integration
def test_a_decision_typed_after_ctrl_c_at_a_gate_is_taken_not_lost(tmp_path: Path) -> None:
    import signal

    from rollgate.core import events as ev
    from rollgate.core.journal import read_journal

    journal = tmp_path / "j.jsonl"
    proc, master, out = headless_at_a_terminal(
        tmp_path, str(SMALL), "--headless", "--lab-inprocess", "--journal", str(journal)
    )
    try:
        wait_for_text(out, "decision [approve/reject]", proc)
        proc.send_signal(signal.SIGINT)
        wait_for_text(out, "[q]uit leaving the run paused", proc)
        os.write(master, b"approve identity looks fine\n")
        wait_for_text(out, "decision [approve/reject]", proc, count=2)  # the next gate
        proc.send_signal(signal.SIGINT)
        wait_for_text(out, "[q]uit leaving the run paused", proc, count=2)
        proc.send_signal(signal.SIGINT)  # a second Ctrl-C aborts without waiting for Enter
        assert proc.wait(timeout=60) == 1
    finally:
        os.close(master)
    events = read_journal(journal).events
    decided = [e for e in events if isinstance(e, ev.GateDecided)]
    assert (decided[0].decision, decided[0].comment) == ("approve", "identity looks fine")
    assert events[-1].outcome == "aborted"  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_pause_after_running_steps_and_say_who(
    tmp_path: Path, signum: str
) -> None:
    import getpass
    import signal
    import time

    from rollgate.core import events as ev
    from rollgate.core.journal import read_journal

    journal = tmp_path / "j.jsonl"
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "rollgate", "run", str(SMALL),
         "--headless", "--auto-approve", "--lab-inprocess", "--time-scale", "0.01",
         "--journal", str(journal)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not journal.exists() or journal.read_text().count("step-finished") < 5:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(getattr(signal, signum))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err
    events = read_journal(journal).events
    paused = next(e for e in events if isinstance(e, ev.RunPaused))
    assert paused.operator == f"signal:{signum} by {getpass.getuser()}"
    assert not any(isinstance(e, ev.RunAborted) for e in events)
    assert not [e for e in events if isinstance(e, ev.StepFinished) and e.outcome != "ok"]
    assert events[-1].outcome == "paused"  # type: ignore[attr-defined]
    decided = [e.operator for e in events if isinstance(e, ev.GateDecided)]
    assert all(decided)  # every decision names who took it


@pytest.mark.integration
def test_runs_keeps_run_ids_whole_when_piped_and_at_80_columns(tmp_path: Path) -> None:
    from tests.sample_run import SHIPPED

    run_dir = tmp_path / "runs" / "20261128-220000-a-cloud-with-a-rather-long-name"
    run_dir.mkdir(parents=True)
    (run_dir / "journal.jsonl").write_bytes(SHIPPED.read_bytes())
    piped = rollgate(tmp_path, "runs")
    header, first = piped.stdout.splitlines()[:2]
    assert header.startswith("RUN ID  CLOUD") and first.startswith(
        f"{run_dir.name}  lab-two-sites  "
    )
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path), "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", "runs"],
        env=env, stdin=slave, stdout=slave, stderr=subprocess.PIPE, timeout=60,
    )  # fmt: skip
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.returncode == 0
    assert run_dir.name in shown.decode(errors="replace")  # on one line, whole
