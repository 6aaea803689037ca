"""SSH behaviours against a server the test starts itself, and the local executor."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncssh
import pytest

from rollgate.core.executor import TransportError
from rollgate.core.inventory import Node, SshConfig
from rollgate.core.transports.local import run_local
from rollgate.core.transports.ssh import SshExecutor
from tests.lab_helpers import random_net

pytestmark = pytest.mark.integration


async def start_server(tmp_path: Path, handler) -> tuple[Node, asyncssh.SSHAcceptor]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(tmp_path / "id"))
    address = f"{random_net()}.7"
    server = await asyncssh.create_server(
        asyncssh.SSHServer,
        host=address,
        port=0,
        server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(
            client_key.export_public_key().decode()
        ),
        process_factory=handler,
        encoding="utf-8",
    )
    port = server.sockets[0].getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{address}]:{port} {host_key.export_public_key().decode()}")
    ssh = SshConfig(
        user="tester",
        port=port,
        key=str(tmp_path / "id"),
        known_hosts=str(known),
        connect_timeout=3,
    )
    return Node("n1", address, "s", ("nova-compute",), None, ssh), server


async def test_connection_dropped_mid_command_is_a_transport_error(tmp_path: Path) -> None:
    async def handler(process: asyncssh.SSHServerProcess) -> None:
        process.stdout.write("starting\n")
        await asyncio.sleep(0.1)
        process.channel.get_connection().abort()  # the node vanished

    node, server = await start_server(tmp_path, handler)
    ssh = SshExecutor()
    lines: list[str] = []
    try:
        with pytest.raises(TransportError, match="connection lost mid-command") as caught:
            await ssh.run(
                node, "long-job", on_output=lambda s, line: lines.append(line), timeout=10
            )
        assert caught.value.retryable
        assert lines == ["starting"]
    finally:
        await ssh.close()
        server.close()


async def test_stdout_and_stderr_each_keep_their_order(tmp_path: Path) -> None:
    async def handler(process: asyncssh.SSHServerProcess) -> None:
        for i in range(50):
            process.stdout.write(f"out {i}\n")
            process.stderr.write(f"err {i}\n")
        process.exit(3)

    node, server = await start_server(tmp_path, handler)
    ssh = SshExecutor()
    got: list[tuple[str, str]] = []
    try:
        result = await ssh.run(
            node, "x", on_output=lambda s, line: got.append((s, line)), timeout=10
        )
        assert result.exit_status == 3
        assert [line for s, line in got if s == "stdout"] == [f"out {i}" for i in range(50)]
        assert [line for s, line in got if s == "stderr"] == [f"err {i}" for i in range(50)]
    finally:
        await ssh.close()
        server.close()


async def test_local_steps_stream_and_time_out(tmp_path: Path) -> None:
    got: list[tuple[str, str]] = []
    result = await run_local(
        "echo hello; echo oops >&2; exit 4",
        on_output=lambda s, line: got.append((s, line)),
        timeout=10,
    )
    assert result.exit_status == 4
    assert sorted(got) == [("stderr", "oops"), ("stdout", "hello")]
    started = time.monotonic()
    result = await run_local(
        f"sleep 30; touch {tmp_path / 'late'}", on_output=lambda *a: None, timeout=0.3
    )
    assert result.timed_out and time.monotonic() - started < 10
    await asyncio.sleep(0.2)
    assert not (tmp_path / "late").exists()  # terminated, not left running
