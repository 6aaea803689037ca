"""Notifications: a gate that waits, a failure and the end of a run, told to a command and a
webhook the inventory names (`notify:`). Texts come from journalled events, so they are
already masked; a failed notification is journalled and never stops the run."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from rollgate.core import events as ev

TIMEOUT = 15.0  # seconds a command or a webhook may take


def gate_text(event: ev.GateOpened) -> tuple[str, str]:
    """(what, text) of a gate that waits for a person: a failure gate is a "failure"."""
    what = "failure" if event.kind == "failure" else "gate"
    return what, f"gate ({event.kind}) waits: {event.title}"


def end_text(event: ev.RunFinished) -> tuple[str, str]:
    return "end", f"run {event.outcome}" + (f": {event.error}" if event.error else "")


@dataclass(frozen=True)
class Notifier:
    """Where the inventory's `notify:` sends what happens."""

    command: str | None
    webhook: str | None
    on: frozenset[str]
    run_id: str
    cloud: str

    @classmethod
    def from_spec(cls, spec: Any, run_id: str, cloud: str) -> Notifier | None:
        if spec is None or (spec.command is None and spec.webhook is None):
            return None
        return cls(spec.command, spec.webhook, frozenset(spec.when), run_id, cloud)

    async def send(self, what: str, text: str) -> list[tuple[str, str]]:
        """Tell every channel; returns (channel, error) for each that failed."""
        if what not in self.on:
            return []
        failures = []
        if self.command is not None:
            error = await self._command(what, text)
            if error:
                failures.append(("command", error))
        if self.webhook is not None:
            error = await asyncio.to_thread(self._post, what, text)
            if error:
                failures.append(("webhook", error))
        return failures

    async def _command(self, what: str, text: str) -> str:
        assert self.command is not None
        env = {
            **os.environ,
            "ROLLGATE_RUN_ID": self.run_id,
            "ROLLGATE_CLOUD": self.cloud,
            "ROLLGATE_EVENT": what,
            "ROLLGATE_TEXT": text,
        }
        try:
            process = await asyncio.create_subprocess_exec(
                *shlex.split(self.command),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:  # never the command line itself: it may carry a token
            return f"the notify command could not start: {exc.strerror or exc}"
        try:
            _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            return f"the notify command took more than {TIMEOUT:g}s and was killed"
        if process.returncode != 0:
            said = err.decode(errors="replace").strip().splitlines()
            return f"the notify command exited {process.returncode}" + (
                f": {said[-1][:200]}" if said else ""
            )
        return ""

    def _post(self, what: str, text: str) -> str:
        assert self.webhook is not None
        body = json.dumps(
            {"run_id": self.run_id, "cloud": self.cloud, "event": what, "text": text}
        ).encode()
        request = urllib.request.Request(
            self.webhook, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                if answer.status >= 300:
                    return f"the webhook answered HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            return f"the webhook answered HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"the webhook could not be reached: {reason}"
        return ""
