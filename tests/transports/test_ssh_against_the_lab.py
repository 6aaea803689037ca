"""The real SSH executor against lab nodes (asyncssh servers on loopback)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import asyncssh
import pytest

from rollgate.core.executor import TransportError
from rollgate.core.inventory import Node
from rollgate.core.lab import Lab
from rollgate.core.transports.ssh import SshExecutor
from tests.lab_helpers import lab_inventory

pytestmark = pytest.mark.integration


def collect() -> tuple[list[tuple[str, str]], object]:
    lines: list[tuple[str, str]] = []
    return lines, lambda stream, line: lines.append((stream, line))


async def test_runs_commands_with_sudo_and_keeps_streams_apart(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path)
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor()
    try:
        node = lab.effective_inventory.node("cmp1")
        lines, out = collect()
        result = await ssh.run(
            node, "dpkg-query -W -f='${Version}' nova-compute", on_output=out, timeout=10
        )
        assert result.exit_status == 0
        assert lines == [("stdout", "3:31.1.0-0ubuntu1~cloud0")]
        lines.clear()
        result = await ssh.run(node, "frobnicate --now", on_output=out, timeout=10)
        assert result.exit_status == 127
        assert lines == [("stderr", "sh: 1: frobnicate: command not found")]
        lines.clear()
        result = await ssh.run(
            lab.effective_inventory.node("ctl1"),
            "nova-status upgrade check",
            on_output=out,
            timeout=10,
        )
        assert result.exit_status == 0 and all(s == "stdout" for s, _ in lines)
        assert any("Upgrade Check Results" in line for _, line in lines)
    finally:
        await ssh.close()
        await lab.close()


async def test_unknown_and_changed_host_keys_are_refused(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path)
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor()
    try:
        node = lab.effective_inventory.node("cmp2")
        empty = tmp_path / "empty_known_hosts"
        empty.write_text("")
        unknown = dataclasses.replace(
            node, ssh=dataclasses.replace(node.ssh, known_hosts=str(empty))
        )
        with pytest.raises(TransportError, match=r"host key of .* is unknown") as caught:
            await ssh.run(unknown, "true", on_output=lambda *a: None, timeout=5)
        assert caught.value.retryable is False
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        wrong = tmp_path / "wrong_known_hosts"
        wrong.write_text(f"[{node.address}]:{node.ssh.port} {other}")
        changed = dataclasses.replace(
            node, ssh=dataclasses.replace(node.ssh, known_hosts=str(wrong))
        )
        with pytest.raises(TransportError, match="CHANGED"):
            await ssh.run(changed, "true", on_output=lambda *a: None, timeout=5)
        # the same, hashed as Ubuntu's ssh writes known_hosts (HashKnownHosts yes)
        hashed = tmp_path / "hashed_known_hosts"
        hashed.write_text(f"{hashed_host(f'[{node.address}]:{node.ssh.port}')} {other}")
        changed = dataclasses.replace(
            node, ssh=dataclasses.replace(node.ssh, known_hosts=str(hashed))
        )
        with pytest.raises(TransportError, match="CHANGED"):
            await ssh.run(changed, "true", on_output=lambda *a: None, timeout=5)
    finally:
        await ssh.close()
        await lab.close()


def hashed_host(name: str) -> str:
    import base64
    import hashlib
    import hmac
    import os

    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


async def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path)
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor()
    try:
        node = lab.effective_inventory.node("cmp1")
        gone = tmp_path / "no_such_key"
        bad = dataclasses.replace(node, ssh=dataclasses.replace(node.ssh, key=str(gone)))
        with pytest.raises(TransportError) as caught:
            await ssh.run(bad, "true", on_output=lambda *a: None, timeout=5)
        assert str(caught.value) == (
            f"cmp1: the SSH key {gone} does not exist; check ssh.key in the inventory"
        )
        assert caught.value.retryable is False
    finally:
        await ssh.close()
        await lab.close()


async def test_auth_failure_names_the_key_tried(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path)
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor()
    try:
        node = lab.effective_inventory.node("cmp1")
        stranger = tmp_path / "stranger"
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
        bad = dataclasses.replace(node, ssh=dataclasses.replace(node.ssh, key=str(stranger)))
        with pytest.raises(TransportError) as caught:
            await ssh.run(bad, "true", on_output=lambda *a: None, timeout=5)
        assert f"authentication failed for rollgate@{node.address}" in str(caught.value)
        assert f"(tried {stranger})" in str(caught.value)
    finally:
        await ssh.close()
        await lab.close()


async def test_timeout_terminates_the_remote_command(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path, faults=["hang:ctl1:glance-manage db expand"])
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor()
    try:
        node = lab.effective_inventory.node("ctl1")
        result = await ssh.run(
            node,
            "glance-manage db expand",
            on_output=lambda *a: None,
            timeout=0.5,
            job="/var/tmp/rollgate-jobs/t/expand-1",
        )
        assert result.timed_out and result.terminated is True
        assert "the command was terminated (checked: nothing of it is left)" in str(result.error)
        for _ in range(100):
            if lab.world.running == 0:
                break
            await asyncio.sleep(0.02)
        assert lab.world.running == 0  # the lab saw the command end, not abandoned
    finally:
        await ssh.close()
        await lab.close()


async def test_refused_connection_is_a_retryable_transport_error(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path, faults=["unreachable:cmp3"])
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor()
    try:
        with pytest.raises(TransportError, match="connection refused") as caught:
            await ssh.run(
                lab.effective_inventory.node("cmp3"), "true", on_output=lambda *a: None, timeout=5
            )
        assert caught.value.retryable
    finally:
        await ssh.close()
        await lab.close()


async def test_two_hundred_nodes_in_parallel_within_the_caps(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path, computes=200)
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor(max_commands=50)
    try:
        nodes: list[Node] = [n for n in lab.effective_inventory.nodes if n.name.startswith("cmp")]
        assert len(nodes) == 200
        lab.world.time_scale = 0.005  # each command takes a moment, so they overlap
        results = await asyncio.gather(
            *(
                ssh.run(n, "systemctl restart nova-compute", on_output=lambda *a: None, timeout=30)
                for n in nodes
            )
        )
        assert [r.exit_status for r in results] == [0] * 200
        assert 1 < lab.world.peak_running <= 50
        assert len(ssh._connections) == 200  # one connection per node, kept for reuse
    finally:
        await ssh.close()
        await lab.close()


async def test_an_api_that_cannot_be_reached_marks_the_api_not_the_node(tmp_path: Path) -> None:
    import re

    from rollgate.core import events as ev
    from rollgate.core.engine import Engine, EngineOptions
    from rollgate.core.plan import build_plan
    from rollgate.core.transports.real import RealExecutor

    inv = lab_inventory(tmp_path, computes=2)
    lab = await Lab.start(inv, serve=True)
    assert lab.clouds_yaml is not None
    # the identity endpoint moves to a port nobody listens on: every API call fails to connect
    text = lab.clouds_yaml.read_text()
    lab.clouds_yaml.write_text(re.sub(r"(auth_url: http://[0-9.]+):\d+", r"\1:9", text))
    executor = RealExecutor(lab.effective_inventory, run_id="t")
    plan = build_plan(inv)
    engine = Engine(
        plan,
        lab.effective_inventory,
        executor,
        EngineOptions("tester", "t", auto_approve=True, backoff=0, status_interval=0),
    )

    async def answer() -> None:
        while not engine.finished.is_set():
            gate = engine.state.gate
            if gate is not None and gate.kind == "failure":
                await engine.send(ev.Command("skip", "tester", "API down", gate.id))
            elif gate is not None and "NOT upgraded" in gate.title:
                await engine.send(ev.Command("reject", "tester", "stop here", gate.id))
            await asyncio.sleep(0.01)

    answering = asyncio.create_task(answer())
    try:
        assert await asyncio.wait_for(engine.run(), 60) == "stopped"
    finally:
        answering.cancel()
        await executor.close()
        await lab.close()
    disable = next(s for s in plan.steps if s.action == "disable-compute")
    assert engine.state.steps[disable.id].status == "skipped"
    first = next(
        e for e in engine.history if isinstance(e, ev.StepFinished) and e.step == disable.id
    )
    assert first.outcome == "unreachable" and "API" in first.error
    node = engine.state.nodes[disable.node]
    assert node.reachable is not False  # SSH to it works; its API did not answer
    assert node.services.get("api") == "unreachable"
    assert node.status == "skipped"


async def test_more_nodes_than_the_connection_cap_are_all_reached(tmp_path: Path) -> None:
    # cap 2 and 5 nodes: idle connections are closed to make room (once, a slot was taken for
    # good per cached connection and node 3 waited for ever)
    inv = lab_inventory(tmp_path, computes=3)
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor(max_connections=2)
    try:
        nodes = lab.effective_inventory.nodes
        assert len(nodes) == 5
        for _ in range(2):  # twice: the second round finds the first round's connections
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(ssh.run(n, "hostname", on_output=lambda *a: None, timeout=10) for n in nodes)
                ),
                30,
            )
            assert [r.exit_status for r in results] == [0] * 5
        assert len(ssh._connections) <= 2
    finally:
        await ssh.close()
        await lab.close()


async def test_a_hung_api_is_a_one_line_error_naming_it_and_never_holds_the_journal(
    tmp_path: Path,
) -> None:
    import socket

    from rollgate.core.cloud import CloudAdapter
    from rollgate.core.journal import JournalWriter

    inv = lab_inventory(tmp_path, computes=1)
    lab = await Lab.start(inv, serve=True)
    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(50)
    port = silent.getsockname()[1]
    assert lab.clouds_yaml is not None
    text = lab.clouds_yaml.read_text()
    import re

    lab.clouds_yaml.write_text(re.sub(r"(auth_url: http://[0-9.]+):\d+", rf"\g<1>:{port}", text))
    site = lab.effective_inventory.sites[1]
    site = dataclasses.replace(site, openstack=dataclasses.replace(site.openstack, timeout=1.0))
    api = CloudAdapter()
    journal = JournalWriter(tmp_path / "j.jsonl", {"run_id": "t"})
    try:
        calls = [
            asyncio.ensure_future(
                api.cloud(
                    site, "list-computes", {"host": "cmp1"}, on_output=lambda *a: None, timeout=5
                )
            )
            for _ in range(12)  # more than the pool's threads, and than the default executor
        ]
        committed = asyncio.ensure_future(journal.commit())
        done, _ = await asyncio.wait({committed, *calls}, return_when=asyncio.FIRST_COMPLETED)
        assert committed in done  # the fsync did not wait behind the blocked API calls
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            assert isinstance(result, TransportError), result
            assert "RegionOne" in str(result) and f":{port}" in str(result)
            assert "\n" not in str(result)
    finally:
        journal.close()
        silent.close()
        await api.close()
        await lab.close()


async def test_known_hosts_is_read_once_but_an_edit_to_it_is_honoured(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path)
    lab = await Lab.start(inv, serve=True)
    ssh = SshExecutor()
    try:
        first, second = (lab.effective_inventory.node(n) for n in ("cmp1", "cmp2"))
        ours = tmp_path / "our_known_hosts"
        ours.write_text(Path(str(first.ssh.known_hosts)).read_text())

        def via(node: Node) -> Node:
            return dataclasses.replace(
                node, ssh=dataclasses.replace(node.ssh, known_hosts=str(ours))
            )

        result = await ssh.run(via(first), "true", on_output=lambda *a: None, timeout=5)
        assert result.exit_status == 0
        # the operator learns the second node's key is not what was recorded and edits it
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        ours.write_text(f"[{second.address}]:{second.ssh.port} {other}")
        with pytest.raises(TransportError, match="CHANGED"):
            await ssh.run(via(second), "true", on_output=lambda *a: None, timeout=5)
    finally:
        await ssh.close()
        await lab.close()
