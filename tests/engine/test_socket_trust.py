"""Nobody else's socket or directory: a run's control socket never leaves its run directory
(however long its path), a directory Rollgate would use that another user made is refused, and
a client sends nothing to a process that is not the run's engine. A second local user plays
the attacker (the tests run as root, as CI does)."""

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

from tests.cli_helpers import rollgate
from tests.engine.conftest import SMALL
from tests.sshd_helpers import login_user

pytestmark = pytest.mark.integration

OTHER = "rollgate-other"

# A process that listens where an engine would and writes down what it was sent.
FAKE_ENGINE = """
import socket, sys
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen()
server.settimeout(30)
record = sys.argv[2]
open(record, "w").write("listening")
try:
    conn, _ = server.accept()
except socket.timeout:
    open(record, "w").write("nothing")
    raise SystemExit
conn.settimeout(3)
got = b""
try:
    while b"\\n" not in got:
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += chunk
except socket.timeout:
    pass
open(record, "w").write("received:" + got.decode(errors="replace"))
try:
    conn.sendall(b'{"ok": true, "operator": "fake"}\\n')
except OSError:
    pass
"""


@pytest.fixture(scope="module")
def other() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root: a second user plays the attacker (CI runs as root)")
    return login_user(OTHER, sudo=False)


@pytest.fixture
def reachable_tmp() -> Iterator[Path]:
    """A temporary directory the other user can reach (pytest's own are root's alone)."""
    where = Path(tempfile.mkdtemp(prefix="rollgate-trust-", dir="/tmp"))
    where.chmod(0o711)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def until(probe, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    answer = probe()
    while not answer and time.monotonic() < deadline:
        time.sleep(0.1)
        answer = probe()
    return answer


def detached(state: Path) -> str:
    out = rollgate(state, "run", str(SMALL), "--detach", "--lab-inprocess", "--time-scale", "0")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_socket_stays_in_its_run_directory_however_long_the_path(
    tmp_path: Path, other: str
) -> None:
    state = tmp_path / ("long-state-directory-" * 6)  # ~130 characters: too long for AF_UNIX
    old_place = Path("/tmp") / f"rollgate-{os.getuid()}"  # where it used to fall back to
    made_by_other = not old_place.exists()
    if made_by_other:  # the other user takes the old fallback place first
        subprocess.run(["runuser", "-u", other, "--", "mkdir", "-m", "0777", str(old_place)],
                       check=True)  # fmt: skip
    try:
        run_id = detached(state)
        run_dir = state / "runs" / run_id
        sock = run_dir / "control.sock"
        assert len(str(sock)) > 107 and sock.is_socket()
        assert not (run_dir / "control.path").exists()
        status = rollgate(state, "status", run_id, "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["state"] == "running"
        assert list(old_place.iterdir()) == []  # nothing of the run there
        rollgate(state, "abort", run_id, "--comment", "test over")
        assert until(lambda: not sock.exists())
    finally:
        if made_by_other:
            subprocess.run(["rm", "-rf", str(old_place)], check=False)


def test_a_decision_never_reaches_a_process_that_is_not_the_runs_engine(
    reachable_tmp: Path, other: str
) -> None:
    tmp_path = reachable_tmp
    state = tmp_path / "state"
    run_id = detached(state)
    run_dir = state / "runs" / run_id
    rollgate(state, "abort", run_id, "--comment", "the real run ends")
    sock = run_dir / "control.sock"
    assert until(lambda: not sock.exists())
    # the other user gets to listen where the engine listened (as if it could write there)
    record = tmp_path / "fake.record"
    for place in (state, state / "runs", run_dir):
        place.chmod(0o777 if place == run_dir else 0o711)
    record.touch()
    record.chmod(0o666)
    python = shutil.which("python3", path="/usr/bin:/bin")  # one the other user may run
    if python is None:
        pytest.skip("needs the system's python3 for the other user's process")
    fake = subprocess.Popen(
        [python, "-c", FAKE_ENGINE, str(sock), str(record)], user=other, group=other
    )
    try:
        assert until(lambda: record.read_text() == "listening", 20)
        out = rollgate(state, "approve", run_id, "--comment", "password=letmein")
        assert out.returncode != 0
        assert "is not the run's engine; nothing was sent to it" in out.stderr
        fake.wait(40)
        said = record.read_text()  # it may have seen the connection: never a byte of it
        assert said in ("received:", "nothing", "listening"), said
        assert "letmein" not in said
    finally:
        fake.kill()
        fake.wait()


def test_a_state_directory_another_user_made_is_refused(reachable_tmp: Path, other: str) -> None:
    tmp_path = reachable_tmp
    state = tmp_path / "state"
    state.mkdir(mode=0o711)
    runs = state / "runs"
    subprocess.run(["mkdir", "-m", "0755", str(runs)], check=True)
    os.chown(runs, *_ids(other))
    out = rollgate(state, "run", str(SMALL), "--detach", "--lab-inprocess")
    assert out.returncode == 2
    assert f"{runs} belongs to uid {_ids(other)[0]} with mode 0755" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_state_directory_others_may_write_to_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "runs").mkdir(parents=True)
    (state / "runs").chmod(0o777)
    out = rollgate(state, "run", str(SMALL), "--detach", "--lab-inprocess")
    assert out.returncode == 2
    assert "belongs to you with mode 0777" in out.stderr


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
