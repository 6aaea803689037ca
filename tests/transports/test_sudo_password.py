"""sudo as operators have it, against real OpenSSH and Debian's sudo: a login whose sudo wants
a password. Without one, `check` says so once per node and no probe misreads sudo's failure
as its own result; with one (from the environment, or asked with -K), a run's steps run as
root and the password is nowhere in what Rollgate keeps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.executor import BecomeFailed
from rollgate.core.inventory import load_inventory
from rollgate.core.journal import read_journal
from rollgate.core.preflight import preflight
from rollgate.core.transports.real import RealExecutor
from rollgate.core.transports.ssh import SshExecutor
from tests.real_node_helpers import headless_run, keystone_inventory
from tests.sshd_helpers import Sshd, login_user, running_sshd

pytestmark = pytest.mark.integration

USER = "rollgate-pw"
PASSWORD = "s3cret-sudo-pw"


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    if not shutil.which("sudo") or not shutil.which("chpasswd"):
        pytest.skip("needs sudo and chpasswd: apt-get install sudo passwd (.ci/run does)")
    with running_sshd(1, "127.81") as server:
        if subprocess.run(["id", USER], capture_output=True).returncode != 0:
            subprocess.run(
                ["useradd", "--system", "--shell", "/bin/sh", "--home-dir", f"/var/lib/{USER}",
                 USER],
                check=True,
            )  # fmt: skip
        subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}\n", text=True, check=True)
        rule = Path("/etc/sudoers.d") / USER
        rule.write_text(f"{USER} ALL=(ALL) ALL\n")  # sudo, but only with the password
        rule.chmod(0o440)
        yield server


def inventory(sshd: Sshd, work: Path, extra: str = "", installed: int = 27) -> Path:
    """One keystone node, logged in to as USER with become; the backup records who ran it.
    The version probe says keystone `installed` (27: the source release, for check; 28: the
    target, for a run's verification)."""
    ssh = (
        f"{{user: {USER}, port: {sshd.port}, key: {sshd.work / 'client_key'}, "
        f"known_hosts: {sshd.known_hosts}, become: true{extra}}}"
    )
    backup = f"id -u > {work / 'backup-ran-as'}"
    return keystone_inventory(work, "sudo", ssh, sshd.addresses[0], backup, installed)


async def test_check_says_the_sudo_problem_once_and_nothing_else_misreads_it(
    sshd: Sshd, tmp_path: Path
) -> None:
    inv = load_inventory(inventory(sshd, tmp_path))
    executor = RealExecutor(inv)
    try:
        findings = await preflight(executor, inv)
    finally:
        await executor.close()
    assert [(f.check, f.ok) for f in findings] == [("reachable", True), ("sudo", False)]
    assert findings[1].detail == (
        "could not run as root on k1: sudo: a password is required — allow passwordless sudo "
        "(NOPASSWD) for this login, or give ssh.become_password or --ask-become-pass"
    )


async def test_a_wrong_password_is_said_as_sudo_refusing_it(sshd: Sshd, tmp_path: Path) -> None:
    node = load_inventory(inventory(sshd, tmp_path)).nodes[0]
    ssh = SshExecutor(become_passwords={"k1": "not-the-password"})
    try:
        with pytest.raises(BecomeFailed) as caught:
            await ssh.run(node, "true", on_output=lambda *a: None, timeout=30)
    finally:
        await ssh.close()
    assert str(caught.value).startswith("k1: could not run as root on k1: sudo: ")
    assert str(caught.value).endswith("incorrect password attempt — the become password is wrong")


def test_check_with_the_password_asked_once(sshd: Sshd, tmp_path: Path) -> None:
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", "check", str(inventory(sshd, tmp_path)), "-K"],
        input=PASSWORD + "\n", env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/1 nodes reachable" in done.stdout and "0 blocking" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_a_run_with_the_password_from_the_environment_runs_as_root_and_keeps_it_nowhere(
    sshd: Sshd, tmp_path: Path
) -> None:
    path = inventory(sshd, tmp_path, ", become_password: {env: ROLLGATE_TEST_SUDO}", 28)
    state = tmp_path / "state"
    journal = tmp_path / "journal.jsonl"
    done = headless_run(path, tmp_path, journal, {"ROLLGATE_TEST_SUDO": PASSWORD})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "backup-ran-as").read_text() == "0\n"  # as root, through sudo -S
    kept = [journal, *state.rglob("*")]
    assert not [p for p in kept if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert PASSWORD not in done.stdout + done.stderr


def test_a_run_without_the_password_fails_the_step_as_sudo_refusing_not_as_its_exit(
    sshd: Sshd, tmp_path: Path
) -> None:
    """The node was reached; sudo ran nothing: the step failed with sudo's reason and no
    exit status, and the node is not called unreachable."""
    path = inventory(sshd, tmp_path, installed=28)
    journal = tmp_path / "journal.jsonl"
    done = headless_run(path, tmp_path, journal)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    events = read_journal(journal).events
    first = next(e for e in events if isinstance(e, ev.StepFinished))
    assert first.outcome == "failed" and first.exit_status is None
    assert first.error.startswith("k1: could not run as root on k1: sudo: a password is required")
    assert not any(isinstance(e, ev.NodeStatus) and e.reachable is False for e in events)
    assert not (tmp_path / "backup-ran-as").exists()


async def test_a_password_sudo_did_not_need_never_reaches_the_command(
    sshd: Sshd, tmp_path: Path
) -> None:
    """A login with passwordless sudo, given a become password anyway: sudo does not read
    it, and the command (reading its stdin) does not get it either, as a step or a job."""
    user = login_user()
    path = inventory(sshd, tmp_path)
    path.write_text(path.read_text().replace(f"user: {USER}", f"user: {user}"))
    node = load_inventory(path).nodes[0]
    ssh = SshExecutor(become_passwords={"k1": PASSWORD})
    lines: list[str] = []
    try:
        plain = await ssh.run(
            node, "cat; id -u", on_output=lambda s, line: lines.append(line), timeout=30
        )
        job = await ssh.run(
            node,
            "cat; id -u",
            on_output=lambda s, line: lines.append(line),
            timeout=30,
            job=f"{tmp_path / 'jobs'}/t/cat-1",
        )
    finally:
        await ssh.clean_jobs(f"{tmp_path / 'jobs'}/t")
        await ssh.close()
    assert (plain.exit_status, job.exit_status) == (0, 0)
    assert lines == ["0", "0"]
