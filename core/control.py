"""A run's control socket: the client interface (events, commands, status) over a Unix domain
socket in the run directory, so consoles, `watch`, scripts and the command line reach a
detached engine the same way.

Protocol: line-delimited JSON, one request per connection.
- `{"op": "events", "from": N}`: every event from seq N, then each new one, one per line,
  until the run ends (the server closes the connection after RunFinished).
- `{"op": "send", "command": {"kind", "comment", "gate", "name", "twins"}}`: one operator
  command (`twins`: with approve, twin gates of other sites approved as they open);
  the answer is `{"ok": true}` or `{"ok": false, "error": "..."}`. The operator is the peer's
  login (SO_PEERCRED), with the name the client gives, both journalled.
- `{"op": "header"}`: the journal's header, `plan_layout` first and the plan last (a client
  builds the plan a phase at a time: core/plan.py split_header_answer); with `"plan": false`,
  without the plan (a client that can read the run's journal takes it from there).
- `{"op": "status"}`: state, gate, progress, estimate, and who is attached.
A malformed or oversized request gets `{"ok": false, "error": "malformed request: ..."}` and
one line in the engine's log; an internal error is logged with its traceback and closes that
connection. Neither stops the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import time
from pathlib import Path
from typing import Any

import orjson

from rollgate.core import events as ev
from rollgate.core.client import CommandRejected
from rollgate.core.engine import Engine
from rollgate.core.estimate import remaining_seconds
from rollgate.core.executor import within
from rollgate.core.plan import Plan, header_answer
from rollgate.core.problems import budget_phase, problem_records
from rollgate.core.report import not_upgraded
from rollgate.core.socket_client import LIMIT, peer_uid, reachable
from rollgate.core.state import RunState

SOCKET_NAME = "control.sock"
log = logging.getLogger("rollgate.control")


class BadRequest(ValueError):
    """A request the protocol does not allow: its client is told, one log line says so."""


def peer_login(writer: asyncio.StreamWriter) -> str:
    """The login name of the process at the other end (SO_PEERCRED), or its uid."""
    uid = peer_uid(writer)
    if uid is None:
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
            "step": gate.step,
            "failures": gate_failures(engine.plan, state, gate),
        },
        "progress": {"steps_done": done, "steps": len(state.steps)},
        "estimate": {"seconds_left": round(left, 1) if left is not None else None},
        "attached": attached,
        "driver": f"{state.operator}@{state.host}" if state.host else state.operator,
        "problems": problem_records(engine.plan, state, limit=PROBLEMS_SHOWN),
        "not_upgraded": ended_not_upgraded(engine.plan, state),
    }


def gate_failures(plan: Plan, state: RunState, gate: Any) -> list[dict[str, Any]]:
    """What a failure gate asks about, as the problem records give it (title, node, command,
    exit status, last output lines): its step's, or for a phase's failure budget, each
    undecided failure of that phase."""
    if gate.kind not in ("failure", "interrupted"):
        return []
    if gate.step is not None:
        return [p for p in problem_records(plan, state) if p["step"] == gate.step]
    phase = budget_phase(gate.id)
    steps = {s.id for p in plan.phases if p.id == phase for s in p.steps}
    return [
        p for p in problem_records(plan, state) if p["step"] in steps and p["decision"] is None
    ][:PROBLEMS_SHOWN]


def ended_not_upgraded(plan: Plan, state: RunState) -> list[dict[str, Any]]:
    """Once the run has ended, every node it left not upgraded, with why (the report's list);
    while it runs, nothing (every node not reached yet would be in it)."""
    if state.finished is None:
        return []
    return not_upgraded(plan, state)[:PROBLEMS_SHOWN]


OPS = ("events", "send", "header", "status")
PROBLEMS_SHOWN = 200  # problem records a status carries (the report has them all)


def _parse(line: bytes) -> dict[str, Any]:
    """One request line as the protocol allows it, or BadRequest saying what is wrong."""
    if not line.strip():
        raise BadRequest("empty request")
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise BadRequest("not a JSON object")
    if request.get("op") not in OPS:
        raise BadRequest(f"unknown op {request.get('op')!r}; one of {', '.join(OPS)}")
    start = request.get("from", 1)
    if request["op"] == "events":
        if isinstance(start, bool) or not isinstance(start, int):
            raise BadRequest(f"'from' is a sequence number, not {start!r}")
        request["from"] = start
    return request


MAX_CONNECTIONS = 256  # open at once; more are answered "busy" and closed
REQUEST_TIMEOUT = 10.0  # seconds a new connection has to send its request line


class ControlServer:
    """Serves one engine on `<run dir>/control.sock` (0600, or 0660 for `group`). At most
    `max_connections` are open at once and each must send its request within
    `request_timeout`, so idle or piled-up connections never take what the run needs."""

    def __init__(
        self,
        engine: Engine,
        header: dict[str, Any],
        path: Path,
        group: str = "",
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT,
    ):
        self.engine = engine
        self.header = header
        self.path = path
        self.group = group
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.attached: dict[int, str] = {}  # connection -> who follows the events
        self.open = 0  # connections being served
        self._refusing = False  # saying "busy" (logged once per burst)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            with reachable(self.path) as name:
                self._server = await asyncio.start_unix_server(self._serve, path=name, limit=LIMIT)
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
        if self.open >= self.max_connections:
            await self._busy(writer)
            return
        self._refusing = False
        self.open += 1
        try:
            await self._request(reader, writer)
        finally:
            self.open -= 1

    async def _busy(self, writer: asyncio.StreamWriter) -> None:
        if not self._refusing:
            self._refusing = True
            log.warning("control socket: %d connections open, refusing more", self.open)
        with contextlib.suppress(Exception):
            writer.write(
                b'{"ok": false, "error": "busy: too many connections to this engine; try again"}\n'
            )
            writer.close()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        login = peer_login(writer)
        op = "?"
        try:
            try:
                request = _parse(await within(reader.readline(), self.request_timeout, None))
            except TimeoutError:
                log.info("control socket: no request from %s within %gs", login,
                         self.request_timeout)  # fmt: skip
                await self._reply(writer, {"ok": False, "error": "no request in time"})
                return
            except (BadRequest, ValueError, asyncio.LimitOverrunError) as exc:
                why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                log.warning("control socket: malformed request from %s: %s", login, why)
                await self._reply(writer, {"ok": False, "error": f"malformed request: {why}"})
                return
            op = request["op"]
            if op == "events":
                await self._events(reader, writer, request["from"], login, request)
            elif op == "send":
                await self._reply(writer, await self._send(request.get("command"), login))
            elif op == "header":  # "plan": false, without it (a client reads the journal's)
                if request.get("plan", True) is False:
                    await self._reply(writer, header_answer(self.header, plan=False))
                else:  # the plan's record (118 MB at 10,000 nodes) is made off the loop:
                    # on it, the loop stood still for half a second; on a thread, 84 ms
                    await self._send_line(writer, await asyncio.to_thread(self._header_line))
            else:
                await self._reply(writer, status_of(self.engine, sorted(self.attached.values())))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except Exception:  # a bug of ours: logged whole, that connection closes
            log.exception("control socket: internal error serving %r for %s", op, login)
        finally:
            self.attached.pop(id(writer), None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _reply(self, writer: asyncio.StreamWriter, data: dict[str, Any]) -> None:
        await self._send_line(writer, orjson.dumps(data))

    async def _send_line(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        writer.write(line)
        writer.write(b"\n")  # not line + newline: a copy of 118 MB at 10,000 nodes
        await writer.drain()

    def _header_line(self) -> bytes:
        """The header with its plan, as a line (the plan is never changed while it runs)."""
        return orjson.dumps(header_answer(self.header))

    async def _send(self, data: Any, login: str) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            return {"ok": False, "error": "a command needs a kind"}
        if data["kind"] not in ev.COMMAND_KINDS:
            return {"ok": False, "error": f"unknown command {data['kind']!r}"}
        gate = data.get("gate")
        twins = data.get("twins") or []
        if not isinstance(twins, list) or not all(isinstance(t, str) for t in twins):
            return {"ok": False, "error": "twins: a list of gate ids"}
        command = ev.Command(
            data["kind"],
            operator_name(login, str(data.get("name") or "")),
            str(data.get("comment") or ""),
            str(gate) if gate else None,
            tuple(twins),
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
            when = (
                time.strftime(" at %H:%M:%S UTC", time.gmtime(decided.decided))
                if decided.decided
                else ""
            )
            return (
                f"that gate was already decided: {decided.decision} by {decided.operator}{when}"
                + (f" ({decided.comment})" if decided.comment else "")
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
        index = history.index_of_seq(start)
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
