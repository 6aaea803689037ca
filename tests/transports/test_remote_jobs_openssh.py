"""Remote steps against real OpenSSH (Debian's sshd on loopback): terminated means nothing is
left, a lost connection re-attaches instead of running a command twice, and a driver that dies
is followed up by the next one."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.executor import TransportError
from rollgate.core.inventory import Node, load_inventory
from rollgate.core.journal import read_journal
from rollgate.core.transports.ssh import SshExecutor
from tests.api_helpers import lab_api, openstack_section
from tests.real_node_helpers import assert_stood_in
from tests.sshd_helpers import Sshd, login_user, processes_with, running_sshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    """One OpenSSH server for the module (each test its own job and work directories)."""
    with running_sshd(2, "127.78") as server:
        yield server


LOGINS = {
    "root": dict(user="root", become=False),
    "user-with-sudo": dict(user=None, become=True),
    "user": dict(user=None, become=False),
}


def inventory_file(
    sshd: Sshd, user: str, become: bool, work: Path, counter: Path, backup_seconds: float = 2
) -> Path:
    """One keystone node on the sshd; every action is `true` but the backup, which counts
    its runs in `counter`, takes a while, then says it finished."""
    count = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}"
    actions = {
        "db-backup": f"{count}; echo backing up; sleep {backup_seconds:g}; echo backup finished",
        **{a: "true" for a in ("keystone:keys-backup", "status-check", "keystone:doctor",
                               "package-source", "upgrade-packages", "keystone:db-expand",
                               "restart", "verify-running", "keystone:db-contract",
                               "keystone:db-check")},
        "record-version": "echo 2:27.0.0-0ubuntu1",  # keystone 27: 2025.1, before
        "verify-version": "echo 2:28.0.0-0ubuntu1",  # keystone 28: the target, 2025.2
        "running-version": "echo apache2 keystone 2:28.0.0-0ubuntu1 pid 4242",
        "keystone:schema-version": "echo e8725d6fa226",  # 2025.2's expand head
        # never the machine's own apt: the node is this machine
        "upgrade-node": "true",
        "left-behind": "echo 0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.",
    }  # fmt: skip
    lines = "".join(f"    {k}: {v!r}\n" for k, v in actions.items())
    path = work / "inventory.yaml"
    path.write_text(
        "cloud: jobs\n"
        'upgrade: {from: "2025.1", to: "2025.2"}\n'
        f"ssh: {{user: {user}, port: {sshd.port}, key: {sshd.work / 'client_key'}, "
        f"known_hosts: {sshd.known_hosts}, become: {str(become).lower()}}}\n"
        "shared: {identity: {site: one}}\n"
        f"sites:\n  one:\n    nodes:\n      - {{name: k1, address: {sshd.addresses[0]}, "
        "roles: [keystone]}\n"
        "policy: {gates: none, step_timeout: 60, transport_retries: 3, start_grace: 0}\n"
        + openstack_section(work)  # the API's checks ask the lab's API (tests/api_helpers.py)
        + f"recipe:\n  variables: {{job_dir: {work / 'jobs'}}}\n  actions:\n{lines}"
    )
    assert_stood_in(path, actions)
    return path


def node_for(sshd: Sshd, user: str, become: bool) -> Node:
    inventory = load_inventory(inventory_file(sshd, user, become, sshd.work, sshd.work / "n"))
    return inventory.nodes[0]


@pytest.mark.parametrize("login", LOGINS)
async def test_a_timed_out_step_leaves_nothing_running_and_says_terminated(
    sshd: Sshd, login: str
) -> None:
    user = LOGINS[login]["user"] or login_user(sudo=bool(LOGINS[login]["become"]))
    node = node_for(sshd, str(user), bool(LOGINS[login]["become"]))
    token = f"rollgate-token-{uuid.uuid4().hex[:8]}"
    ssh = SshExecutor()
    jobs = f"/var/tmp/rollgate-test-jobs-{uuid.uuid4().hex[:8]}"
    try:
        result = await ssh.run(
            node,
            f"sleep 1000 # {token}",
            on_output=lambda *a: None,
            timeout=1.5,
            job=f"{jobs}/t/sleep-1",
        )
        assert result.timed_out and result.terminated is True, result
        assert result.error == (
            "timed out after 1.5s; the command was terminated (checked: nothing of it is left)"
        )
        assert processes_with(token) == []
        # the job's directory is private to the login that ran it
        mode = os.stat(f"{jobs}/t/sleep-1").st_mode & 0o777
        assert mode == 0o700 and os.stat(jobs).st_mode & 0o777 == 0o700
    finally:
        await ssh.clean_jobs(f"{jobs}/t")
        await ssh.close()
    assert not Path(f"{jobs}/t").exists()
    shutil.rmtree(jobs)


def driver(work: Path, inventory: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(work / "state")}
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "rollgate", "run", str(inventory),
         "--headless", "--auto-approve", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip


def wait_for_line(path: Path, text: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not (path.exists() and text in path.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, f"never saw {text!r}"
        time.sleep(0.02)


def test_a_lost_connection_re_attaches_and_the_command_runs_once(
    sshd: Sshd, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    inventory = inventory_file(sshd, "root", False, tmp_path, counter)
    journal = tmp_path / "journal.jsonl"
    with lab_api(inventory, tmp_path):
        proc = driver(tmp_path, inventory, "--journal", str(journal))
        wait_for_line(journal, '["backing up"', proc)  # its output, not its command line
        assert sshd.cut_connections() > 0  # the driver's connection drops mid-command
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert counter.read_text().strip() == "1"
    events = read_journal(journal).events
    backup = next(e for e in events if isinstance(e, ev.StepFinished) and "db-backup" in e.step)
    assert backup.outcome == "ok" and backup.attempt == 1
    lines = [
        line
        for e in events
        if isinstance(e, ev.StepOutput) and e.step == backup.step
        for line in e.lines
    ]
    assert lines.count("backing up") == 1 and lines.count("backup finished") == 1
    assert any("retrying" in line for line in lines)  # the lost connection was said
    # every job ended, so the run removed its job directories from the node
    assert list((tmp_path / "jobs").iterdir()) == []


def test_a_driver_killed_mid_step_is_followed_up_by_resume_without_a_second_run(
    sshd: Sshd, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    inventory = inventory_file(sshd, "root", False, tmp_path, counter)
    journal = tmp_path / "journal.jsonl"
    with lab_api(inventory, tmp_path):
        proc = driver(tmp_path, inventory, "--journal", str(journal))
        wait_for_line(journal, '["backing up"', proc)  # its output, not its command line
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        resumed = driver(tmp_path, inventory, "--resume", str(journal))
        out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + err
    assert counter.read_text().strip() == "1"  # followed, not run again
    events = read_journal(journal).events
    assert not any(isinstance(e, ev.GateOpened) and e.kind == "interrupted" for e in events)
    backup = [e for e in events if isinstance(e, ev.StepFinished) and "db-backup" in e.step]
    assert [(e.outcome, e.attempt) for e in backup] == [("interrupted", 1), ("ok", 1)] or [
        (e.outcome, e.attempt) for e in backup
    ] == [("ok", 1)]
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").rglob("status"))


def test_a_sigterm_to_the_detached_engine_leaves_the_job_for_the_next_driver(
    sshd: Sshd, tmp_path: Path
) -> None:
    """The engine ends within seconds, paused; the backup's job runs on on the node, and the
    resumed run follows it to its end: it ran once."""
    counter = tmp_path / "runs"
    inventory = inventory_file(sshd, "root", False, tmp_path, counter, backup_seconds=8)
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path / "state")}
    started = subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", "run", str(inventory), "--detach",
         "--auto-approve"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    run_dir = tmp_path / "state" / "runs" / started.stdout.strip()
    journal = run_dir / "journal.jsonl"
    deadline = time.monotonic() + 60
    while '["backing up"' not in (journal.read_text() if journal.exists() else ""):
        assert time.monotonic() < deadline, "the backup never started"
        time.sleep(0.05)
    os.kill(int((run_dir / "engine.pid").read_text()), signal.SIGTERM)
    signalled = time.monotonic()
    while not read_journal(journal).events or not isinstance(
        read_journal(journal).events[-1], ev.RunFinished
    ):
        assert time.monotonic() - signalled < 10, "the engine did not end within 10 s"
        time.sleep(0.1)
    events = read_journal(journal).events
    assert events[-1].outcome == "paused"  # type: ignore[attr-defined]
    backup = next(e for e in events if isinstance(e, ev.StepFinished) and "db-backup" in e.step)
    assert backup.outcome == "interrupted" and "the job runs on on k1" in backup.error
    assert '["backup finished"' not in journal.read_text()  # left running: not seen to end
    with lab_api(inventory, tmp_path):
        resumed = driver(tmp_path, inventory, "--resume", str(journal))
        out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + err
    assert counter.read_text().strip() == "1"  # followed to its end, never run again
    after = read_journal(journal).events
    backups = [e for e in after if isinstance(e, ev.StepFinished) and "db-backup" in e.step]
    assert [(e.outcome, e.attempt) for e in backups] == [("interrupted", 1), ("ok", 1)]
    assert not any(isinstance(e, ev.GateOpened) and e.kind == "interrupted" for e in after)


async def test_the_same_job_started_twice_runs_once(sshd: Sshd, tmp_path: Path) -> None:
    node = dataclasses.replace(node_for(sshd, "root", False))
    counter = tmp_path / "twice"
    ssh = SshExecutor()
    job = f"{tmp_path}/jobs/run/count-1"
    command = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}; sleep 1"
    try:
        first, second = await asyncio.gather(
            ssh.run(node, command, on_output=lambda *a: None, timeout=30, job=job),
            ssh.run(node, command, on_output=lambda *a: None, timeout=30, job=job),
        )
    finally:
        await ssh.close()
    assert first.exit_status == second.exit_status == 0
    assert counter.read_text().strip() == "1"


async def test_an_abort_kills_the_job_and_checks_it_is_gone(sshd: Sshd) -> None:
    node = node_for(sshd, "root", False)
    token = f"rollgate-token-{uuid.uuid4().hex[:8]}"
    ssh = SshExecutor()
    jobs = f"/var/tmp/rollgate-test-jobs-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    try:
        running = asyncio.ensure_future(
            ssh.run(
                node, f"sleep 1000 # {token}", on_output=lambda *a: None, timeout=60,
                job=f"{jobs}/t/abort-1", stop=stop,
            )
        )  # fmt: skip
        for _ in range(200):
            if processes_with(token):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.01 * (uuid.uuid4().int % 5))  # early or late in the start
        stop.set()  # what the engine does on abort
        result = await running
        assert result.interrupted and result.terminated is True, result
        assert result.error == (
            "aborted by the operator; the command was terminated (checked: nothing of it is left)"
        )
        # the abort may land while the wrapper's `start` still runs (its arguments carry the
        # token too): that short script ends by itself; the command must never start or stay
        for _ in range(100):
            if not processes_with(token):
                break
            await asyncio.sleep(0.02)
        assert processes_with(token) == []
    finally:
        await ssh.clean_jobs(f"{jobs}/t")
        await ssh.close()
        shutil.rmtree(jobs, ignore_errors=True)


async def test_a_cancelled_step_kills_its_job_and_the_cancellation_goes_on(sshd: Sshd) -> None:
    """The engine's own task cancelled (its process shutting down): the job is killed and the
    cancellation propagates, never turned into a normal return."""
    node = node_for(sshd, "root", False)
    token = f"rollgate-token-{uuid.uuid4().hex[:8]}"
    ssh = SshExecutor()
    jobs = f"/var/tmp/rollgate-test-jobs-{uuid.uuid4().hex[:8]}"
    try:
        running = asyncio.ensure_future(
            ssh.run(
                node, f"sleep 1000 # {token}", on_output=lambda *a: None, timeout=60,
                job=f"{jobs}/t/cancel-1",
            )
        )  # fmt: skip
        for _ in range(200):
            if processes_with(token):
                break
            await asyncio.sleep(0.02)
        assert processes_with(token)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        for _ in range(100):
            if not processes_with(token):
                break
            await asyncio.sleep(0.02)
        assert processes_with(token) == []
    finally:
        await ssh.clean_jobs(f"{jobs}/t")
        await ssh.close()
        shutil.rmtree(jobs, ignore_errors=True)


async def test_a_kill_that_races_the_start_cancels_the_job(sshd: Sshd) -> None:
    """kill before start: the job's directory is taken, so the late start starts nothing."""

    node = node_for(sshd, "root", False)
    token = f"rollgate-token-{uuid.uuid4().hex[:8]}"
    job = f"/var/tmp/rollgate-test-jobs-{uuid.uuid4().hex[:8]}/t/race-1"
    ssh = SshExecutor()
    try:
        assert (await ssh._exec(node, "kill", job, 1))[1].strip() == "terminated"
        said = (await ssh._exec(node, "start", job, f"sleep 1000 # {token}"))[1]
        assert said.strip() == "attached"  # found taken: nothing started
        assert processes_with(token) == []
    finally:
        await ssh.clean_jobs(job.rsplit("/", 1)[0])
        await ssh.close()
        shutil.rmtree(job.rsplit("/", 2)[0], ignore_errors=True)


OTHER = "rollgate-other"


async def test_a_job_directory_another_login_made_is_refused_and_its_fake_job_never_counts(
    sshd: Sshd,
) -> None:
    """Another local user takes a job directory first and leaves a job in it that 'ended'
    with exit 0: Rollgate neither follows nor starts anything there, and says why."""
    other = login_user(OTHER, sudo=False)
    root = Path(f"/var/tmp/rollgate-test-jobs-{uuid.uuid4().hex[:8]}")
    fake = root / "run" / "step-1"
    for where in (root, root.parent / root.name / "run", fake):
        where.mkdir(mode=0o777, exist_ok=True)
        where.chmod(0o777)
    (fake / "status").write_text("0\n")
    (fake / "stdout").write_text("upgraded, honestly\n")
    for where in (root, fake.parent, fake, fake / "status", fake / "stdout"):
        shutil.chown(where, other, other)
    node = node_for(sshd, "root", False)
    token = f"rollgate-token-{uuid.uuid4().hex[:8]}"
    ssh = SshExecutor()
    said: list[str] = []
    try:
        result = await ssh.run(
            node, f"echo ran # {token}", on_output=lambda s, x: said.append(x), timeout=30,
            job=str(fake),
        )  # fmt: skip
        try:
            await ssh.follow(node, str(fake), on_output=lambda *a: None, timeout=30)
            refused = ""
        except TransportError as exc:  # nothing to follow there: the node says why
            refused = str(exc)
    finally:
        await ssh.close()
        shutil.rmtree(root, ignore_errors=True)
    assert result.exit_status is None and "upgraded, honestly" not in said
    assert f"the job directory {root} belongs to uid" in (result.error or "")
    assert "belongs to uid" in refused
    assert processes_with(token) == []


async def test_a_non_root_login_works_on_a_node_where_root_ran_jobs_before(sshd: Sshd) -> None:
    """The default job directory is one per login (%u: the login's uid)."""
    base = f"/var/tmp/rollgate-test-jobs-{uuid.uuid4().hex[:8]}"
    pattern = f"{base}-%u"
    user = login_user(sudo=False)
    results = []
    for login in ("root", user):  # root first, then the other login, each its own driver
        ssh = SshExecutor()
        try:
            node = node_for(sshd, login, False)
            job = f"{pattern}/run/step-1"
            results.append(
                await ssh.run(node, "true", on_output=lambda *a: None, timeout=30, job=job)
            )
        finally:
            await ssh.close()
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    try:
        assert [r.exit_status for r in results] == [0, 0], results
        assert os.stat(f"{base}-0").st_uid == 0 and os.stat(f"{base}-{uid}").st_uid == uid
        assert os.stat(f"{base}-{uid}").st_mode & 0o777 == 0o700
    finally:
        for where in (f"{base}-0", f"{base}-{uid}"):
            shutil.rmtree(where, ignore_errors=True)


def test_check_reports_a_job_directory_others_may_write_to(sshd: Sshd, tmp_path: Path) -> None:
    shared = tmp_path / "jobs"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    inventory = inventory_file(sshd, "root", False, tmp_path, tmp_path / "n")
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "400"}
    out = subprocess.run([sys.executable, "-P", "-m", "rollgate", "check", str(inventory)],
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"the job directory {shared} may be written by others" in out.stdout
    shared.chmod(0o700)
    again = subprocess.run([sys.executable, "-P", "-m", "rollgate", "check", str(inventory)],
                           env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "job directory" not in again.stdout, again.stdout  # fine now: not among the problems
