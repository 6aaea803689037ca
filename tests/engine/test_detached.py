"""The run outlives the terminal: a detached engine, the command line deciding its gates, a
console attached over the control socket, and the socket refusing what is malformed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollgate.core.detach import control_socket
from rollgate.core.journal import read_journal
from rollgate.core.plan import Plan, plan_from_record, split_header_answer
from rollgate.core.socket_client import SocketClient, reachable
from rollgate.tui.app import RollgateApp
from rollgate.tui.commands.control import _with_plan
from rollgate.tui.keys_footer import KeysFooter
from rollgate.tui.screens.dialogs import PromptScreen
from tests.cli_helpers import rollgate
from tests.engine.conftest import SMALL

pytestmark = pytest.mark.integration


def start(tmp_path: Path, *extra: str, inventory: Path = SMALL) -> str:
    out = rollgate(tmp_path, "run", str(inventory), "--detach", "--lab-inprocess",
                   "--time-scale", "0", *extra)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (run_id,) = out.stdout.split()  # only the run id on stdout
    return run_id


def eventually(probe: Callable[[], Any], timeout: float) -> Any:
    """What `probe` returns once it is truthy (asked every 0.1 s), or its last answer."""
    deadline = time.monotonic() + timeout
    answer = probe()
    while not answer and time.monotonic() < deadline:
        time.sleep(0.1)
        answer = probe()
    return answer


def status(tmp_path: Path, run_id: str) -> dict:
    out = rollgate(tmp_path, "status", run_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


async def until_a_gate(app: RollgateApp, pilot: Any) -> None:
    """Wait (5 s at most) for the console to show the engine waiting at a gate."""
    for _ in range(100):
        await pilot.pause(0.05)
        if app.state.gate is not None:
            return


def drive_by_command_line(tmp_path: Path, run_id: str, deadline: float = 90) -> dict:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        now = status(tmp_path, run_id)
        if now["state"] not in ("running", "paused", "pending"):
            return now
        if now.get("gate"):
            rollgate(tmp_path, "approve", run_id, "--comment", "from a script", "--name", "bot")
        else:
            time.sleep(0.1)
    raise AssertionError("the run did not end")


def drive_over_the_socket(tmp_path: Path, run_id: str, deadline: float = 90) -> dict:
    """Approve each gate through the control socket from this process (what the command
    line does, without a process per question), then the run's final status, as
    `rollgate status` says it."""
    from rollgate.core.client import CommandRejected, EngineGone
    from rollgate.core.events import Command

    client = SocketClient(control_socket(tmp_path / "runs" / run_id), None, {}, name="bot")
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            now = asyncio.run(client.request({"op": "status"}))
            if now["state"] not in ("running", "paused", "pending"):
                break
            if now.get("gate"):
                with contextlib.suppress(CommandRejected):  # decided meanwhile: ask again
                    asyncio.run(client.send(Command("approve", "bot", "", now["gate"]["id"])))
            else:
                time.sleep(0.05)
        except EngineGone:  # the run ended and its engine with it
            break
    else:
        raise AssertionError("the run did not end")
    return status(tmp_path, run_id)


def test_the_command_line_drives_a_detached_run_to_the_end(tmp_path: Path) -> None:
    # no phase gates: the downtime and canary gates only, six questions, each a few processes
    # of the command line (SMALL's phase gates asked the same question thirteen times)
    canaries = tmp_path / "small-canaries.yaml"
    canaries.write_text(SMALL.read_text().replace("gates: [phase, canary]", "gates: [canary]"))
    run_id = start(tmp_path, inventory=canaries)
    run_dir = tmp_path / "runs" / run_id
    first = status(tmp_path, run_id)
    assert first["gate"]["kind"] == "downtime" and first["gate"]["options"] == ["approve", "reject"]
    assert first["progress"]["steps"] > 0 and "estimate" in first
    refused = rollgate(tmp_path, "retry", run_id)
    assert refused.returncode == 1
    assert "this gate takes approve, reject, not retry" in refused.stderr
    # a second decision of the same gate (a colleague a second late) says who was first
    rollgate(tmp_path, "approve", run_id, "--name", "ann")
    late = SocketClient(control_socket(run_dir), None, {}, name="bob")
    from rollgate.core.client import CommandRejected
    from rollgate.core.events import Command

    with pytest.raises(CommandRejected, match=r"already decided: approve by \S+ \(ann\) at "
                       r"\d\d:\d\d:\d\d UTC"):  # fmt: skip
        asyncio.run(late.send(Command("approve", "bob", "", first["gate"]["id"])))
    final = drive_by_command_line(tmp_path, run_id)
    assert final["state"] == "complete"
    journal = read_journal(run_dir / "journal.jsonl")
    decided = [e for e in journal.events if type(e).__name__ == "GateDecided"]
    assert len(decided) == 6  # downtime and canary gates, the first decided by ann
    login = os.environ.get("USER") or __import__("getpass").getuser()
    assert decided[0].operator == f"{login} (ann)"
    assert all(e.operator == f"{login} (bot)" for e in decided[1:])  # peer + name
    assert not control_socket(run_dir).exists()  # nothing left listening
    after = rollgate(tmp_path, "approve", run_id)
    assert after.returncode == 1 and "has ended (complete); no engine serves it" in after.stderr
    assert "resume" not in after.stderr and f"rollgate report {run_id}" in after.stderr
    listed = rollgate(tmp_path, "runs").stdout.splitlines()
    assert listed[0].startswith("RUN ID") and "complete" in listed[1]
    [record] = json.loads(rollgate(tmp_path, "runs", "--json").stdout)
    assert (record["run_id"], record["state"]) == (run_id, "complete")
    assert record["journal"] == str(run_dir / "journal.jsonl")


def test_a_detached_run_survives_its_console_being_killed(tmp_path: Path) -> None:
    """`rollgate run` in a terminal starts the engine, then its console; SIGKILL the console
    and the run is still there, at its gate, for the next console or command."""
    master, slave = pty.openpty()
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path), "COLUMNS": "120", "LINES": "40",
           "TERM": "xterm-256color"}  # fmt: skip
    console = subprocess.Popen(
        [sys.executable, "-P", "-m", "rollgate", "run", str(SMALL),
         "--lab-inprocess", "--time-scale", "0"],
        env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    runs = tmp_path / "runs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (runs.is_dir() and any(runs.iterdir())):
        time.sleep(0.1)
    (run_dir,) = list(runs.iterdir())
    while time.monotonic() < deadline and not control_socket(run_dir).exists():
        time.sleep(0.1)
    attached = eventually(lambda: status(tmp_path, run_dir.name)["attached"], 60)
    assert attached  # the console is attached to its engine
    os.killpg(console.pid, signal.SIGKILL)
    console.wait(timeout=10)
    os.close(master)
    alive = status(tmp_path, run_dir.name)
    assert alive["state"] == "running" and alive["gate"] is not None  # it waits, undecided
    for _ in range(50):  # the killed console is no longer counted attached
        if not alive["attached"]:
            break
        time.sleep(0.1)
        alive = status(tmp_path, run_dir.name)
    assert alive["attached"] == []
    final = drive_over_the_socket(tmp_path, run_dir.name)
    assert final["state"] == "complete"


async def test_a_console_attached_over_the_socket_closes_a_dialog_decided_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLGATE_STATE_DIR", str(tmp_path))
    run_id = await asyncio.to_thread(start, tmp_path)
    run_dir = tmp_path / "runs" / run_id
    client = SocketClient(control_socket(run_dir), None, {}, name="olga")
    header = await client.request({"op": "header"})
    client.plan, client.header = Plan.from_dict(header["plan"]), header
    app = RollgateApp(client, operator="olga")
    async with app.run_test(size=(150, 44)) as pilot:
        await until_a_gate(app, pilot)
        assert app.state.gate is not None
        await pilot.press("a")  # the approve dialog asks for a comment
        await pilot.pause(0.2)
        assert isinstance(app.screen, PromptScreen)
        out = await asyncio.to_thread(
            rollgate, tmp_path, "approve", run_id, "--comment", "seen", "--name", "bob"
        )
        assert out.returncode == 0, out.stderr
        for _ in range(60):
            await pilot.pause(0.05)
            if not isinstance(app.screen, PromptScreen):
                break
        assert not isinstance(app.screen, PromptScreen)  # closed, not left to approve twice
        said = [n.message for n in app._notifications]
        assert any("gate decided: approve by " in m and "(bob)" in m for m in said), said
        live = await client.request({"op": "status"})
        assert any("olga" in who for who in live["attached"])
        second = SocketClient(control_socket(run_dir), client.plan, header, name="bob")
        stream = second.events(1)
        await stream.__anext__()  # a second console attached: the first one's header names it
        for _ in range(80):
            await pilot.pause(0.05)
            if "attached: " in str(app.w_header.render()):
                break
        assert "(bob)" in str(app.w_header.render()) and "(olga)" in str(app.w_header.render())
        await stream.aclose()
        await pilot.press("q", "d")  # detach: the run goes on
        await pilot.pause(0.2)
    again = await asyncio.to_thread(status, tmp_path, run_id)
    assert again["state"] == "running"
    await asyncio.to_thread(rollgate, tmp_path, "abort", run_id, "--comment", "test over")


def test_malformed_truncated_and_huge_requests_never_stop_the_engine(tmp_path: Path) -> None:
    run_id = start(tmp_path)
    run_dir = tmp_path / "runs" / run_id
    path = str(control_socket(run_dir))
    junks = [
        b"not json\n", b'{"op": "send"', b"[1, 2]\n", b'{"op": "nope"}\n',
        b'{"op": "send", "command": 7}\n', b"x" * (2 << 20) + b"\n", b"\xff\xfe\n",
    ]  # fmt: skip
    replies: list[bytes] = []
    for junk in junks:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            with reachable(Path(path)) as name:  # however long the test's directory is
                sock.connect(name)
            said = b""
            with contextlib.suppress(OSError):
                sock.sendall(junk)
                sock.shutdown(socket.SHUT_WR)
                while chunk := sock.recv(65536):
                    said += chunk
            replies.append(said)
    # each gets an answer saying what is wrong (the huge one may be cut off while it sends)
    answers = [json.loads(r) for r in replies if r]
    assert len(answers) >= len(junks) - 1
    assert all(a["ok"] is False for a in answers)
    assert {"malformed request: not JSON", "malformed request: not a JSON object",
            "malformed request: unknown op 'nope'; one of events, send, header, status",
            "a command needs a kind"} <= {a["error"].split(" (")[0] for a in answers}  # fmt: skip
    assert status(tmp_path, run_id)["state"] == "running"
    assert (os.stat(path).st_mode & 0o777) == 0o600
    rollgate(tmp_path, "abort", run_id, "--comment", "fuzzed")
    assert eventually(lambda: status(tmp_path, run_id)["state"] == "aborted", 30)
    journal = read_journal(run_dir / "journal.jsonl")  # whole
    assert type(journal.events[-1]).__name__ == "RunFinished"
    log = (run_dir / "engine.log").read_text()
    assert log.count("malformed request") >= len(junks) - 2  # one line each, no traceback
    assert "Traceback" not in log


async def test_a_watcher_on_the_socket_follows_and_cannot_decide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLGATE_STATE_DIR", str(tmp_path))
    run_id = await asyncio.to_thread(start, tmp_path)
    from rollgate.core.client import CommandRejected
    from rollgate.core.events import Command
    from rollgate.tui.commands.control import engine_client

    watcher = await asyncio.to_thread(
        functools.partial(engine_client, run_id, "watching", read_only=True)
    )
    # the plan, built a phase at a time from the engine's answer, is the run's
    assert watcher.plan.digest == watcher.header["plan_digest"] and "plan" not in watcher.header
    app = RollgateApp(watcher, operator="watching (read-only)")
    async with app.run_test(size=(150, 44)) as pilot:
        await until_a_gate(app, pilot)
        assert app.state.gate is not None  # the live run, through the socket
        assert "driven by " in str(app.w_header.render())
        footer = str(app.screen.query_one(KeysFooter).render())
        assert "Approve" not in footer
        with pytest.raises(CommandRejected, match="only watches"):
            await watcher.send(Command("approve", "x", "", app.state.gate.id))
    await asyncio.to_thread(rollgate, tmp_path, "abort", run_id, "--comment", "test over")


def test_a_control_group_opens_the_socket_to_a_team(tmp_path: Path) -> None:
    """(A member of the group attaching and deciding: tests/engine/test_control_group.py.)"""
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    bad = rollgate(tmp_path, "run", str(SMALL), "--detach", "--control-group", "no-such-grp")
    assert bad.returncode == 2 and "no such group" in bad.stderr
    shared = Path(tempfile.mkdtemp(prefix="rollgate-team-", dir="/tmp"))  # the team can reach it
    shared.chmod(0o711)
    try:
        run_id = start(shared, "--control-group", group)
        info = os.stat(control_socket(shared / "runs" / run_id))
        assert (info.st_mode & 0o777) == 0o660 and info.st_gid == os.getgid()
        rollgate(shared, "abort", run_id, "--comment", "test over")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_an_answer_longer_than_the_read_buffer_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header of a run of 10,000 nodes holds its plan (118 MB): past the buffer a line is
    read with, it ended `rollgate status` and `attach` in a traceback. Here the buffer is made
    smaller than SMALL's header, a real engine answers."""
    from rollgate.core import socket_client

    run_id = start(tmp_path)
    client = SocketClient(control_socket(tmp_path / "runs" / run_id), None, {}, name="t")
    try:
        header = asyncio.run(client.request({"op": "header"}))
        monkeypatch.setattr(socket_client, "LIMIT", 64)  # the client reads with 4 KB
        assert len(json.dumps(header)) > 10 * 64 * 64
        assert asyncio.run(client.request({"op": "header"})) == header
        # the plan comes last, laid out by phase: a client builds it a phase at a time
        read, record = split_header_answer(asyncio.run(client.request_line({"op": "header"})))
        assert record is not None
        assert plan_from_record(record, read["plan_layout"]).digest == read["plan_digest"]
        # asked without it, the engine spends nothing on the plan; a client that cannot read
        # the run's journal (another login's) then asks for it after all
        alone = asyncio.run(client.request_line({"op": "header", "plan": False}))
        assert "plan" not in json.loads(alone) and json.loads(alone)["run_id"] == run_id
        elsewhere = SocketClient(client.path, None, {}, name="t")
        _with_plan(elsewhere, tmp_path / "not-readable" / "journal.jsonl", alone)
        assert elsewhere.plan.digest == elsewhere.header["plan_digest"] == read["plan_digest"]
        assert asyncio.run(client.request({"op": "status"}))["run_id"] == run_id
        # `rollgate status` and a decision of a live run read none of its plan: a script that
        # polls a run of 10,000 nodes does not pay for the plan's models each time
        probe = (
            "import sys; from click.testing import CliRunner; from rollgate.tui.cli import cli; "
            f"out = CliRunner().invoke(cli, ['status', {run_id!r}]); "
            "print(out.exit_code, 'waiting at gate' in out.output, "
            "'rollgate.core.plan' in sys.modules)"
        )
        env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path)}
        said = subprocess.run(
            [sys.executable, "-P", "-c", probe], env=env, capture_output=True, text=True
        )
        assert said.stdout.split() == ["0", "True", "False"], said.stdout + said.stderr
    finally:
        monkeypatch.undo()
        rollgate(tmp_path, "abort", run_id)
