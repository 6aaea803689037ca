"""A client of a run's control socket (core/control.py speaks the other end): the console
attached to a detached engine, `watch`, `status` and the command line's decisions. It is the
client interface (core/client.py) over the socket, and imports nothing of the engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from rollgate.core import events as ev
from rollgate.core.client import ClientBase, CommandRejected, EngineGone, NotTheEngine

LIMIT = 1 << 20  # bytes a request line may take (the server's limit too)
SOCKET_PATH_MAX = 100  # an AF_UNIX path longer than ~107 bytes cannot be bound or reached


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """The engine's one-line answer, however long: the header of a run of 10,000 nodes holds
    its plan, 100 MB and more, past any buffer limit a line is read with (readline refused it,
    and `rollgate status` of such a run ended in a traceback). Empty when the engine closed
    the connection first."""
    chunks: list[bytes] = []
    while True:
        try:
            return b"".join(chunks) + await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:  # no newline in the buffer yet: take it
            chunks.append(await reader.readexactly(exc.consumed))
        except asyncio.IncompleteReadError as exc:  # closed before the end of the line
            return b"".join(chunks) + exc.partial


@contextlib.contextmanager
def reachable(path: Path) -> Iterator[str]:
    """A name for the socket `path` that AF_UNIX takes: the path itself, or, when it is too
    long, `/proc/self/fd/N/NAME` through a descriptor of its directory held meanwhile. The
    socket stays in its own directory either way (never a shorter place elsewhere)."""
    if len(str(path)) <= SOCKET_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return int(struct.unpack("3i", creds)[1])


class SocketClient(ClientBase):
    """A client of a run's control socket: the console attached, `watch`, the command line."""

    def __init__(
        self,
        path: Path,
        plan: Any,
        header: dict[str, Any],
        *,
        name: str = "",
        read_only: bool = False,
    ):
        self.path = path
        self.plan = plan
        self.header = header
        self.name = name
        self.read_only = read_only
        self.attach = True  # a console's events connection counts as attached (watchers too)
        self.detachable = True  # a console on it may leave; the run goes on
        self.driver_gone = False  # the events stream ended before the run did

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the run's engine, after checking the process that answers runs as
        the run's owner: anything else listening there gets nothing, not even a request."""
        try:
            with reachable(self.path) as name:
                reader, writer = await asyncio.open_unix_connection(name, limit=LIMIT * 64)
        except OSError as exc:
            raise EngineGone(f"the run's engine does not answer on {self.path}: {exc}") from None
        try:
            owner = os.stat(self.path.parent).st_uid
        except OSError:
            owner = -1
        answering = peer_uid(writer)
        if answering != owner:
            writer.close()
            raise NotTheEngine(
                f"the process on {self.path} runs as uid {answering}, not as the run's owner "
                f"(uid {owner}): it is not the run's engine; nothing was sent to it"
            )
        return reader, writer

    async def request(self, data: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = orjson.loads(await self.request_line(data))
        return answer

    async def request_line(self, data: dict[str, Any]) -> bytes:
        """The engine's answer to `data` as it came, one JSON line."""
        reader, writer = await self._open()
        try:
            writer.write(json.dumps(data).encode() + b"\n")
            await writer.drain()
            line = await _answer(reader)
        finally:
            writer.close()
        if not line:
            raise EngineGone("the run's engine closed the connection")
        return line

    async def events(self, from_seq: int = 1) -> AsyncIterator[ev.Event]:
        reader, writer = await self._open()
        request = {"op": "events", "from": from_seq, "attach": self.attach, "name": self.name}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        ended = False
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ConnectionError, OSError):
                    line = b""
                if not line:
                    # the run ended, or the engine went away before it did
                    self.driver_gone = self.driver_gone or not ended
                    return
                event = ev.event_from_dict(orjson.loads(line))
                ended = isinstance(event, ev.RunFinished)
                yield event
        finally:
            writer.close()

    async def send(self, command: ev.Command) -> None:
        if self.read_only:
            raise CommandRejected("this console only watches; attach to decide")
        answer = await self.request(
            {
                "op": "send",
                "command": {
                    "kind": command.kind,
                    "comment": command.comment,
                    "gate": command.gate,
                    "name": self.name or command.operator,
                    "twins": list(command.twins),
                },
            }
        )
        if not answer.get("ok"):
            raise CommandRejected(str(answer.get("error", "refused")))

    async def attached(self) -> list[str]:
        """Who has a console attached to the engine now (from its status)."""
        live = await self.request({"op": "status"})
        return [str(who) for who in live.get("attached", [])]
