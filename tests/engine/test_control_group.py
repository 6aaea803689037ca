"""A team's shared run: with --control-group, a member of the group (another login) reaches the
run's socket, follows the run as an attached console and approves its gate, journalled under
its own login; every other run stays its owner's alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.journal import read_journal
from tests.cli_helpers import rollgate
from tests.engine.conftest import SMALL
from tests.sshd_helpers import login_user

pytestmark = pytest.mark.integration

TEAM = "rollgate-team"
MEMBER = "rollgate-member"

# What a member's console and command line send, in the socket's protocol (the member's own
# Python: Rollgate's virtualenv is root's alone in CI). argv: socket, what to do, its args.
MEMBER_CLIENT = r"""
import json, os, socket, sys
path, what = sys.argv[1], sys.argv[2]
fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
where = "/proc/self/fd/%d/%s" % (fd, os.path.basename(path))
def talk(request, lines=1):
    s = socket.socket(socket.AF_UNIX)
    s.connect(where)
    s.sendall(json.dumps(request).encode() + b"\n")
    f = s.makefile("rb")
    return s, [json.loads(f.readline()) for _ in range(lines)]
if what == "status":
    print(json.dumps(talk({"op": "status"})[1][0]))
elif what == "attach":  # an attached console: reads the run's first events, stays connected
    s, events = talk({"op": "events", "from": 1, "attach": True, "name": "mia"}, lines=3)
    print(json.dumps([e["type"] for e in events]), flush=True)
    sys.stdin.read()
elif what == "approve":
    command = {"kind": "approve", "comment": sys.argv[4], "gate": sys.argv[3], "name": "mia"}
    print(json.dumps(talk({"op": "send", "command": command})[1][0]))
"""


@pytest.fixture(scope="module")
def member() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root: a second login in a group attaches (CI runs as root)")
    if subprocess.run(["getent", "group", TEAM], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", TEAM], check=True)
    name = login_user(MEMBER, sudo=False)
    subprocess.run(["usermod", "-a", "-G", TEAM, name], check=True)
    return name


@pytest.fixture
def shared_place() -> Iterator[Path]:
    """A state directory the team can reach (pytest's temporary ones are root's alone)."""
    where = Path(tempfile.mkdtemp(prefix="rollgate-team-", dir="/tmp"))
    where.chmod(0o711)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def as_member(member: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("needs the system's python3 for the member's client")
    return subprocess.Popen(
        [python, "-c", MEMBER_CLIENT, *args], user=member, group=member, extra_groups=[TEAM],
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_member_of_the_group_attaches_and_approves_under_their_login(
    member: str, shared_place: Path
) -> None:
    state = shared_place / "state"
    out = rollgate(state, "run", str(SMALL), "--detach", "--lab-inprocess", "--time-scale", "0",
                   "--control-group", TEAM)  # fmt: skip
    assert out.returncode == 0, out.stderr
    run_dir = state / "runs" / out.stdout.strip()
    sock = run_dir / "control.sock"
    try:
        assert (os.stat(run_dir).st_mode & 0o777) == 0o710
        assert (os.stat(run_dir / "journal.jsonl").st_mode & 0o777) == 0o600  # nothing to read
        attached = as_member(member, str(sock), "attach", stdin=subprocess.PIPE)
        assert attached.stdout is not None
        assert json.loads(attached.stdout.readline())[0] == "run-started"
        deadline = time.monotonic() + 30
        while True:
            said = as_member(member, str(sock), "status").communicate(timeout=30)
            status = json.loads(said[0])
            if status["gate"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status["gate"] is not None and status["attached"] == [f"{member} (mia)"]
        approve = as_member(member, str(sock), "approve", status["gate"]["id"], "go, says mia")
        answer = json.loads(approve.communicate(timeout=30)[0])
        assert answer == {"ok": True, "operator": f"{member} (mia)"}
        attached.communicate(input="", timeout=30)
    finally:
        rollgate(state, "abort", run_dir.name, "--comment", "test over")
    deadline = time.monotonic() + 30
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    decided = [e for e in read_journal(run_dir / "journal.jsonl").events
               if isinstance(e, ev.GateDecided) and e.comment == "go, says mia"]  # fmt: skip
    assert [e.operator for e in decided] == [f"{member} (mia)"]


def test_without_the_group_another_login_cannot_reach_the_socket(
    member: str, shared_place: Path
) -> None:
    state = shared_place / "state"
    out = rollgate(state, "run", str(SMALL), "--detach", "--lab-inprocess", "--time-scale", "0")
    assert out.returncode == 0, out.stderr
    run_dir = state / "runs" / out.stdout.strip()
    try:
        assert (os.stat(run_dir).st_mode & 0o777) == 0o700
        tried = as_member(member, str(run_dir / "control.sock"), "status")
        _, err = tried.communicate(timeout=30)
        assert tried.returncode != 0 and "PermissionError" in err
    finally:
        rollgate(state, "abort", run_dir.name, "--comment", "test over")


def test_a_group_its_members_could_not_reach_is_refused_before_starting(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make the group")
    out = rollgate(tmp_path / "state", "run", str(SMALL), "--detach", "--lab-inprocess",
                   "--control-group", "root")  # fmt: skip
    assert out.returncode == 2
    assert "--control-group root: its members cannot pass through" in out.stderr
