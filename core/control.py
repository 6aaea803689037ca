"""A run's control socket: the client interface (events, commands, status) over a Unix domain
socket in the run directory, so consoles, `watch`, scripts and the command line reach a
detached engine the same way.

Protocol: line-delimited JSON, one request per connection.
- `{"op": "events", "from": N}`: every event from seq N, then each new one, one per line,
  until the run ends (the server closes the connection after RunFinished).
- `{"op": "send", "command": {"kind", "comment", "gate", "name"}}`: one operator command;
  the answer is `{"ok": true}` or `{"ok": false, "error": "..."}`. The operator is the peer's
  login (SO_PEERCRED), with the name the client gives, both journalled.
- `{"op": "header"}`: the journal's header (plan included).
- `{"op": "status"}`: state, gate, progress, estimate, and who is attached.
A malformed or oversized request closes that connection, never the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from rollgate.core import events as ev
from rollgate.core.engine import CommandRejected, Engine
from rollgate.core.estimate import remaining_seconds

LIMIT = 1 << 20  # bytes a request line may take
SOCKET_NAME = "control.sock"


def peer_login(writer: asyncio.StreamWriter) -> str:
    """The login name of the process at the other end (SO_PEERCRED), or its uid."""
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
    except (OSError, AttributeError):
        return "unknown"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def operator_name(login: str, given: str) -> str:
    """Who decided, as the journal keeps it: the login, and the name given when it differs."""
    given = given.strip()
    return f"{login} ({given})" if given and given != login else login


def status_of(engine: Engine, attached: list[str]) -> dict[str, Any]:
    """What `rollgate status --json` says of a live run."""
    state = engine.state
    gate = state.gate
    done = state.settled_count
    now = engine.clock()
    left = remaining_seconds(state, now, engine.options.past_pace)
    return {
        "run_id": state.run_id,
        "state": state.status,
        "gate": None
        if gate is None
        else {
            "id": gate.id,
            "kind": gate.kind,
            "title": gate.title,
            "options": list(gate.options),
            "choices": list(gate.choices),
        },
        "progress": {"steps_done": done, "steps": len(state.steps)},
        "estimate": {"seconds_left": round(left, 1) if left is not None else None},
        "attached": attached,
        "driver": f"{state.operator}@{state.host}" if state.host else state.operator,
    }


class ControlServer:
    """Serves one engine on `<run dir>/control.sock` (0600, or 0660 for `group`)."""

    def __init__(self, engine: Engine, header: dict[str, Any], path: Path, group: str = ""):
        self.engine = engine
        self.header = header
        self.path = path
        self.group = group
        self.attached: dict[int, str] = {}  # connection -> who follows the events
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=LIMIT
            )
        finally:
            os.umask(old)
        if self.group:
            import grp

            os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
            os.chmod(self.path, 0o660)
        else:
            os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        login = peer_login(writer)
        try:
            line = await reader.readline()
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
            op = request.get("op")
            if op == "events":
                await self._events(reader, writer, int(request.get("from", 1)), login, request)
            elif op == "send":
                await self._reply(writer, await self._send(request.get("command"), login))
            elif op == "header":
                await self._reply(writer, self.header)
            elif op == "status":
                await self._reply(writer, status_of(self.engine, sorted(self.attached.values())))
            else:
                raise ValueError(f"unknown op {op!r}")
        except (ValueError, TypeError, asyncio.LimitOverrunError, UnicodeDecodeError):
            pass  # a malformed or oversized request: that connection closes, nothing else
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.attached.pop(id(writer), None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _reply(self, writer: asyncio.StreamWriter, data: dict[str, Any]) -> None:
        writer.write(json.dumps(data).encode() + b"\n")
        await writer.drain()

    async def _send(self, data: Any, login: str) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            return {"ok": False, "error": "a command needs a kind"}
        gate = data.get("gate")
        command = ev.Command(
            data["kind"],
            operator_name(login, str(data.get("name") or "")),
            str(data.get("comment") or ""),
            str(gate) if gate else None,
        )
        try:
            await self.engine.send(command)
        except CommandRejected as exc:
            return {"ok": False, "error": self._why(command, str(exc))}
        return {"ok": True, "operator": command.operator}

    def _why(self, command: ev.Command, error: str) -> str:
        """A refusal, saying who decided when the gate was decided already."""
        decided = next(
            (g for g in self.engine.state.gates if g.id == command.gate and g.decision), None
        )
        if decided is not None:
            return f"that gate was already decided: {decided.decision} by {decided.operator}" + (
                f" ({decided.comment})" if decided.comment else ""
            )
        return error

    async def _events(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        start: int,
        login: str,
        request: dict[str, Any],
    ) -> None:
        """Replay from `start`, then follow; ends when the run ends or the client goes (a
        console killed while nothing happens is not counted attached for long)."""
        if request.get("attach"):
            self.attached[id(writer)] = operator_name(login, str(request.get("name") or ""))
        history = self.engine.history
        index = next((i for i, e in enumerate(history) if e.seq >= start), len(history))
        gone = asyncio.ensure_future(reader.read(1))  # the client sends nothing more: EOF
        try:
            while True:
                while index < len(history):
                    writer.write(orjson.dumps(history[index].to_dict()) + b"\n")
                    index += 1
                await writer.drain()
                if self.engine.finished.is_set() and index >= len(history):
                    return
                more = asyncio.ensure_future(self.engine.wait_for_event_after(index))
                await asyncio.wait({more, gone}, return_when=asyncio.FIRST_COMPLETED)
                if gone.done():
                    more.cancel()
                    return
        finally:
            gone.cancel()


class SocketClient:
    """A client of a run's control socket: the console attached, `watch`, the command line."""

    def __init__(self, path: Path, plan: Any, header: dict[str, Any], *, name: str = ""):
        self.path = path
        self.plan = plan
        self.header = header
        self.name = name
        self.read_only = False
        self.attach = True  # the console's events connection counts as attached
        self.detachable = True  # a console on it may leave; the run goes on
        self.driver_gone = False  # the events stream ended before the run did

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_unix_connection(str(self.path), limit=LIMIT * 64)
        except OSError as exc:
            raise EngineGone(f"the run's engine does not answer on {self.path}: {exc}") from None

    async def request(self, data: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await self._open()
        try:
            writer.write(json.dumps(data).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise EngineGone("the run's engine closed the connection")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def events(self, from_seq: int = 1) -> AsyncIterator[ev.Event]:
        reader, writer = await self._open()
        request = {"op": "events", "from": from_seq, "attach": self.attach, "name": self.name}
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return  # the run ended, or the engine went away (the reader says which)
                yield ev.event_from_dict(orjson.loads(line))
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
                },
            }
        )
        if not answer.get("ok"):
            raise CommandRejected(str(answer.get("error", "refused")))


class EngineGone(Exception):
    """Nothing answers on the run's control socket."""
