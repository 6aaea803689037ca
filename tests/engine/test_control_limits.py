"""The control socket cannot be drowned: past its cap new connections are told "busy" at once,
a connection that sends nothing is closed after the request timeout, and the run goes on
meanwhile."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rollgate.core import events as ev
from rollgate.core.control import ControlServer
from rollgate.core.socket_client import reachable
from tests.engine.conftest import make


async def ask(path: Path, request: bytes) -> dict:  # type: ignore[type-arg]
    with reachable(path) as name:
        reader, writer = await asyncio.open_unix_connection(name)
    writer.write(request)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    return json.loads(line)


async def test_idle_connections_past_the_cap_never_stop_the_run(tmp_path: Path) -> None:
    h = await make(faults=[])
    sock = tmp_path / "control.sock"
    server = ControlServer(h.engine, {}, sock, max_connections=20, request_timeout=1.0)
    await server.start()
    idle: list[asyncio.StreamWriter] = []
    try:
        for _ in range(20):  # connect and say nothing
            with reachable(sock) as name:
                idle.append((await asyncio.open_unix_connection(name))[1])
        for _ in range(100):
            if server.open == 20:
                break
            await asyncio.sleep(0.01)
        busy = await ask(sock, b'{"op": "status"}\n')
        assert busy["ok"] is False
        assert busy["error"] == "busy: too many connections to this engine; try again"
        run = asyncio.create_task(h.engine.run())  # the run goes on while they sit there
        for _ in range(300):  # the idle ones are closed once their time is up
            if server.open == 0:
                break
            await asyncio.sleep(0.01)
        assert server.open == 0
        status = await ask(sock, b'{"op": "status"}\n')
        assert status["run_id"] == "t"
        assert await asyncio.wait_for(run, 30) == "complete"
        assert isinstance(h.engine.history[-1], ev.RunFinished)
    finally:
        for writer in idle:
            writer.close()
        await server.close()
        await h.lab.close()
