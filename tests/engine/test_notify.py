"""Notifications: gates that wait, failures and the end of a run reach the inventory's command
and webhook (a loopback HTTP server here); one that fails is journalled and the run goes on."""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollgate.core import events as ev
from rollgate.core.inventory import InventoryError, NotifySpec, parse_inventory
from rollgate.core.notify import Notifier
from tests.engine.conftest import SMALL, drive, make


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/t0ken", received
    server.shutdown()
    server.server_close()


async def test_gates_failures_and_the_end_reach_the_command_and_the_webhook(
    tmp_path: Path, webhook: tuple[str, list[dict[str, str]]]
) -> None:
    url, received = webhook
    said = tmp_path / "said.txt"
    command = f"sh -c 'echo \"$ROLLGATE_EVENT|$ROLLGATE_RUN_ID|$ROLLGATE_TEXT\" >> {said}'"
    h = await make(auto_approve=True, faults=["fail:one-cmp3:systemctl restart nova-compute:1:1"])
    spec = NotifySpec(command=command, webhook=url)
    h.engine.options = dataclasses.replace(
        h.engine.options, notifier=Notifier.from_spec(spec, "t", "small")
    )

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "failure":
            return ev.Command("retry", "tester", "", gate.gate)
        return None

    assert await drive(h, decide) == "complete"
    lines = said.read_text().splitlines()
    # auto-approved gates never waited: only the failure and the end are told
    assert [line.split("|")[0] for line in lines] == ["failure", "end"]
    assert lines[0].startswith("failure|t|gate (failure) waits: ") and "one-cmp3" in lines[0]
    assert lines[1] == "end|t|run complete"
    assert [r["event"] for r in received] == ["failure", "end"]
    assert received[1] == {"run_id": "t", "cloud": "small", "event": "end", "text": "run complete"}
    assert isinstance(h.engine.history[-1], ev.RunFinished)
    assert not [e for e in h.engine.history if isinstance(e, ev.NotificationFailed)]


async def test_a_notification_that_fails_is_journalled_and_the_run_goes_on() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    h = await make(auto_approve=False)
    spec = NotifySpec(command="false", webhook=f"http://127.0.0.1:{port}/hook", when=["gate"])
    h.engine.options = dataclasses.replace(
        h.engine.options, notifier=Notifier.from_spec(spec, "t", "small")
    )
    assert await drive(h, lambda gate: None) == "complete"
    failed = [e for e in h.engine.history if isinstance(e, ev.NotificationFailed)]
    assert {e.channel for e in failed} == {"command", "webhook"}
    assert all(e.about == "gate" for e in failed)  # `when` left the end out
    assert any("the notify command exited 1" in e.error for e in failed)
    assert any("the webhook could not be reached" in e.error for e in failed)
    assert isinstance(h.engine.history[-1], ev.RunFinished)


def test_a_notify_section_is_validated_with_its_line() -> None:
    text = SMALL.read_text() + "notify:\n  webhook: chat.example/hook\n  when: [gate, lunch]\n"
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, "inv.yaml")
    problems = [str(p) for p in caught.value.problems]
    assert any("is not an http:// or https:// URL" in p for p in problems), problems
    assert any("notify.when" in p for p in problems), problems
