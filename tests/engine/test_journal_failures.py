"""The journal is the run: a write that fails, or a journal that vanishes or shrinks, stops the
run at once, says so in one line, and leaves something that reads back whole."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.journal import read_journal
from tests.cli_helpers import rollgate
from tests.engine.conftest import drive, make

SMALL = Path(__file__).with_name("small.yaml")


@pytest.fixture
def small_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 256 KiB tmpfs: the small cloud's journal (~400 KB, its plan ~210 KB) fills it
    mid-run."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs (a disk that fills up)")
    where = tmp_path / "small-disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)])
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


@pytest.mark.integration
def test_a_detached_engine_stopped_by_a_full_disk_says_why_in_its_log(
    tmp_path: Path, small_tmpfs: Path
) -> None:
    journal = small_tmpfs / "journal.jsonl"
    out = rollgate(tmp_path, "run", str(SMALL), "--detach", "--auto-approve", "--lab-inprocess",
                   "--journal", str(journal))  # fmt: skip
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "runs" / out.stdout.strip()
    deadline = time.monotonic() + 60
    while (run_dir / "engine.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the engine's own end
    log = (run_dir / "engine.log").read_text()
    assert "run failed: " in log and "No space left on device" in log, log
    assert "Traceback" not in log


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
    said = await asyncio.to_thread(rollgate, tmp_path, "status", str(journal))
    assert said.returncode == 0, said.stderr
    assert f"the run's record is in {tmp_path / 'journal.jsonl.recovered'}" in said.stdout
    assert "run t: failed" in said.stdout  # read from the recovered copy when it must be


@pytest.mark.integration
def test_every_file_rollgate_makes_is_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = rollgate(tmp_path / "state-parent", "run", str(SMALL), "--headless", "--auto-approve")
    # rollgate() points ROLLGATE_STATE_DIR at its first argument
    state = tmp_path / "state-parent"
    assert out.returncode == 0, out.stdout + out.stderr
    report = tmp_path / "report.md"
    run_id = next((state / "runs").iterdir()).name
    assert rollgate(state, "report", run_id, "-o", str(report)).returncode == 0
    made = [state, *state.rglob("*")]
    assert len(made) > 10  # runs, locks, the lab's world, keys, clouds.yaml, known_hosts
    wrong = [
        (str(p), oct(p.stat().st_mode & 0o777))
        for p in made
        if p.stat().st_mode & 0o777 != (0o700 if p.is_dir() else 0o600)
    ]
    assert wrong == []
    assert report.stat().st_mode & 0o777 == 0o600


@pytest.mark.integration
@pytest.mark.parametrize("journal", ["/dev/full", "/proc/nope/journal.jsonl"])
def test_an_unwritable_journal_is_refused_and_leaves_no_run_behind(
    tmp_path: Path, journal: str
) -> None:
    out = rollgate(
        tmp_path, "run", str(SMALL), "--headless", "--lab-inprocess", "--journal", journal
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error: cannot ")
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_resume_takes_the_lock_before_it_reads_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from rollgate.core import session as session_module
    from rollgate.core.runs import cloud_lock
    from rollgate.core.session import RunOptions, open_session

    monkeypatch.setenv("ROLLGATE_STATE_DIR", str(tmp_path))
    journal = tmp_path / "j.jsonl"
    first = rollgate(tmp_path, "run", str(SMALL), "--headless", "--lab-inprocess",
                     "--journal", str(journal))  # fmt: skip
    assert first.returncode == 1  # paused at its first gate: no terminal
    lock_file = cloud_lock("small").path
    held_when_read: list[bool] = []
    real_read = session_module.read_journal

    def read(path):  # type: ignore[no-untyped-def]
        probe = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held_when_read.append(False)
        except BlockingIOError:
            held_when_read.append(True)
        finally:
            os.close(probe)
        return real_read(path)

    monkeypatch.setattr(session_module, "read_journal", read)

    async def resume() -> None:
        options = RunOptions(resume=str(journal), lab_inprocess=True)
        async with open_session(str(SMALL), options):
            pass

    asyncio.run(resume())
    assert held_when_read == [True]


@pytest.mark.parametrize("line", ['["a", "list"]', '"a string"', "42", "null"])
def test_a_journal_line_that_is_json_but_no_object_is_a_one_line_error(
    tmp_path: Path, line: str
) -> None:
    from tests.sample_run import SHIPPED

    lines = SHIPPED.read_text().splitlines()
    lines.insert(5, line)
    journal = tmp_path / "journal.jsonl"
    journal.write_text("\n".join(lines) + "\n")
    for command in (["report", str(journal)], ["replay", str(journal), "--headless"]):
        out = rollgate(tmp_path, *command)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith(f"error: {journal}:6: damaged record in run ")
    resumed = rollgate(tmp_path, "run", str(SMALL), "--headless", "--resume", str(journal))
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr


@pytest.mark.integration
def test_runs_says_running_then_no_driver_once_the_driver_is_gone(tmp_path: Path) -> None:
    import signal
    import sys
    import time

    from rollgate.core.runs import NO_DRIVER

    journal = tmp_path / "j.jsonl"
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path), "COLUMNS": "250"}
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "rollgate", "run", str(SMALL),
         "--headless", "--auto-approve", "--lab-inprocess", "--time-scale", "0.01",
         "--journal", str(journal)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not journal.exists() or journal.read_text().count("step-finished") < 3:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    listing = rollgate(tmp_path, "runs")
    assert listing.stdout.rstrip().endswith("  running")  # piped: one plain line per run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listing = rollgate(tmp_path, "runs")
    assert "engine lost" in listing.stdout, listing.stdout
    assert NO_DRIVER.startswith("engine lost")


async def test_watching_a_journal_that_is_deleted_ends_with_a_one_line_error(
    tmp_path: Path,
) -> None:
    from rollgate.core.client import open_journal_client
    from rollgate.core.journal import JournalError
    from tests.sample_run import SHIPPED

    journal = tmp_path / "journal.jsonl"
    lines = SHIPPED.read_text().splitlines()
    journal.write_text("\n".join(lines[:50]) + "\n")  # a run still going
    client = open_journal_client(str(journal), follow=True)
    client.poll = 0.01

    async def follow() -> None:
        async for _ in client.events(1):
            pass

    watching = asyncio.ensure_future(follow())
    await asyncio.sleep(0.1)
    journal.unlink()
    with pytest.raises(JournalError) as caught:
        await asyncio.wait_for(watching, 5)
    assert "deleted or moved while being watched" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "command", [["run", str(SMALL), "--headless", "--lab-inprocess"], ["runs"]]
)
def test_an_unwritable_state_directory_is_a_one_line_error(
    tmp_path: Path, command: list[str]
) -> None:
    out = rollgate(Path("/proc/rollgate-nope"), *command)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("error: cannot use the state directory /proc/rollgate-nope")
    assert "set ROLLGATE_STATE_DIR to a directory you can write to" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unwritable_report_or_lab_directory_is_a_one_line_error(tmp_path: Path) -> None:
    from tests.sample_run import SHIPPED

    out = rollgate(tmp_path, "report", str(SHIPPED), "-o", "/proc/rollgate-nope/report.md")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: cannot write /proc/rollgate-nope/report.md: ")
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(SMALL.read_text() + "  state_dir: /proc/rollgate-nope/lab\n")
    out = rollgate(tmp_path, "run", str(inventory), "--headless", "--lab-inprocess")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: cannot use the lab's state directory /proc/rollgate-nope")
