"""The console under load: the real app, headless (run_test), 10,000 nodes, 2,000 log lines/s.

A client feeds a running upgrade of a 10 x 1,000 plan for 10 seconds: output batches that add
up to 2,000 lines per second, steps starting and finishing across the batch. Event-to-screen
latency is from the moment the client yields an event to the end of the first screen refresh
after the console drew it. Key-to-render is from a key press (sent as the terminal driver sends
it) to the end of the refresh that shows its effect, while the load runs: moving the
pipeline's cursor (the steps table follows), and opening and closing the help screen (a full
repaint of the screen).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from common import peak_rss_mb, percentile, report  # type: ignore[import-not-found]
from textual import events

from rollgate.core import events as ev
from rollgate.core.client import ClientBase
from rollgate.core.inventory import load_inventory
from rollgate.core.plan import Plan, build_plan
from rollgate.core.socket_client import LIMIT, SocketClient
from rollgate.tui.app import RollgateApp
from rollgate.tui.gc_policy import tuned_gc
from tests.bench.scale import scale_inventory_file

LINES_PER_SECOND = 2000
SECONDS = 10.0
TICK = 0.01  # the feed emits every 10 ms
LINES_PER_EVENT = 2
KEYS = True


class FeedClient(ClientBase):
    """A running upgrade, paced in real time; remembers when each event was emitted."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.header: dict[str, Any] = {}
        self.emitted: dict[int, float] = {}
        self.lines = 0
        self.done = asyncio.Event()

    async def events(self, from_seq: int = 1) -> AsyncIterator[ev.Event]:
        seq = 0

        def make(cls: type[ev.Event], **fields: Any) -> ev.Event:
            nonlocal seq
            seq += 1
            self.emitted[seq] = time.perf_counter()
            return cls(seq=seq, time=time.time(), mono=time.monotonic(), **fields)

        yield make(ev.RunStarted, run_id="bench", operator="bench", plan_digest=self.plan.digest)
        compute = [p for p in self.plan.phases if p.tier == "compute"]
        for phase in compute:
            yield make(ev.PhaseStarted, phase=phase.id)
        steps = [s for p in compute for s in p.steps if s.executor == "ssh"]
        running: list[Any] = []
        per_tick = round(LINES_PER_SECOND * TICK / LINES_PER_EVENT)
        start = time.perf_counter()
        tick = 0
        position = 0
        while time.perf_counter() - start < SECONDS:
            tick += 1
            if len(running) >= 100:  # a batch of 100 steps in flight; the oldest ten finish
                for step in running[:10]:
                    yield make(ev.StepFinished, step=step.id, attempt=1, outcome="ok")
                del running[:10]
            for step in steps[position : position + 10]:
                yield make(ev.StepStarted, step=step.id, node=step.node, attempt=1)
                running.append(step)
            position = (position + 10) % len(steps)
            for n in range(per_tick):
                step = running[(tick + n) % len(running)]
                self.lines += LINES_PER_EVENT
                yield make(
                    ev.StepOutput,
                    step=step.id,
                    stream="stdout",
                    lines=tuple(f"{step.node}: unpacking {tick}.{n}.{i}" for i in range(2)),
                )
            delay = start + tick * TICK - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))
        self.done.set()
        while True:  # a run that goes on, quietly
            await asyncio.sleep(1)

    async def send(self, command: ev.Command) -> None:
        return None


class MeasuredApp(RollgateApp):
    """The console, noting when the events it has drawn reach the screen."""

    def __init__(self, client: FeedClient, view: Any = None):
        super().__init__(view or client, operator="bench")
        self.feed = client
        self.shown: dict[int, float] = {}
        self._drawn_to = 0

    def _refresh(self) -> None:
        super()._refresh()
        seq = self.state.last_seq
        if seq > self._drawn_to:
            first, self._drawn_to = self._drawn_to + 1, seq
            self.call_after_refresh(self._on_screen, first, seq)

    def _on_screen(self, first: int, last: int) -> None:
        now = time.perf_counter()
        for seq in range(first, last + 1):
            self.shown[seq] = now


async def after_refresh(app: RollgateApp) -> None:
    done = asyncio.get_running_loop().create_future()
    app.call_after_refresh(lambda: done.done() or done.set_result(None))
    await done


def send_key(app: RollgateApp, key: str, char: str | None = None) -> None:
    message = events.Key(key, char)
    message.set_sender(app)
    app._driver.send_message(message)  # type: ignore[union-attr]


async def cursor_key_to_render(app: RollgateApp, key: str) -> float:
    """Move the pipeline's cursor (the steps table follows it); time until it is rendered."""
    table = app.w_pipeline
    before = table.cursor_row
    start = time.perf_counter()
    send_key(app, key)
    while table.cursor_row == before:
        await asyncio.sleep(0.001)
    await after_refresh(app)
    return time.perf_counter() - start


async def key_to_render(app: RollgateApp, key: str, opens: bool) -> float:
    """Send a key as the terminal driver would; time until its screen change is rendered."""
    base = app.screen_stack[0]
    start = time.perf_counter()
    send_key(app, key, "?" if key == "question_mark" else None)
    while (app.screen is not base) != opens:
        await asyncio.sleep(0.001)
    await after_refresh(app)
    return time.perf_counter() - start


async def serve_feed(client: FeedClient, path: str) -> asyncio.AbstractServer:
    """The feed behind a control socket, speaking core/control.py's protocol (events as JSON
    lines), so the console reads it as it reads a detached engine."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline() or b"{}")
        try:
            if request.get("op") != "events":
                writer.write(b"{}\n")  # status polls: nothing to say
                return
            async for event in client.events(int(request.get("from", 1))):
                writer.write(orjson.dumps(event.to_dict()) + b"\n")
                await writer.drain()
        except (asyncio.CancelledError, ConnectionError):
            pass  # the benchmark is over
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, path=path, limit=LIMIT)


def _engine_process(inventory: str, path: str, ready: Any) -> None:
    """The feed as a detached engine would be: another process (another core), serving the
    control socket; events carry their creation time (`mono`, the same clock system-wide)."""
    plan = build_plan(load_inventory(Path(inventory)))

    async def main() -> None:
        await serve_feed(FeedClient(plan), path)
        ready.set()
        await asyncio.sleep(SECONDS + 30)

    asyncio.run(main())


class SocketFeed(ClientBase):
    """The console's side of an attached run: what arrived, and when it was created."""

    def __init__(self, client: SocketClient):
        self.client = client
        self.plan, self.header, self.read_only = client.plan, client.header, False
        self.emitted: dict[int, float] = {}
        self.lines = 0
        self.done = asyncio.Event()

    async def events(self, from_seq: int = 1) -> AsyncIterator[ev.Event]:
        first: float | None = None
        async for event in self.client.events(from_seq):
            self.emitted[event.seq] = event.mono  # CLOCK_MONOTONIC, as perf_counter here
            if isinstance(event, ev.StepOutput):
                self.lines += len(event.lines)
            if first is None:  # the feed runs SECONDS from its first event
                first = time.perf_counter()
                asyncio.get_running_loop().call_later(SECONDS + 0.5, self.done.set)
            yield event

    async def send(self, command: ev.Command) -> None:
        return None


async def run(plan: Plan, attached: bool, inventory: str = "") -> None:
    keys: list[float] = []
    help_keys: list[float] = []
    if not attached:
        client: Any = FeedClient(plan)
        app = MeasuredApp(client)
        with tuned_gc(console=True):  # as `rollgate run` sets it for the console
            await drive(app, client, keys, help_keys)
        report_figures(app, client, keys, help_keys, "console")
        return
    import multiprocessing

    with tempfile.TemporaryDirectory(prefix="rgsock-") as tmp:
        path = str(Path(tmp) / "control.sock")
        context = multiprocessing.get_context("spawn")  # not a fork of a running event loop
        ready = context.Event()
        engine = context.Process(target=_engine_process, args=(inventory, path, ready), daemon=True)
        engine.start()
        ready.wait(60)
        feed = SocketFeed(SocketClient(Path(path), plan, {}, name="bench"))
        app = MeasuredApp(feed, feed)  # type: ignore[arg-type]
        with tuned_gc(console=True):
            await drive(app, feed, keys, help_keys)  # type: ignore[arg-type]
        engine.terminate()
        engine.join(10)
    report_figures(app, feed, keys, help_keys, "console.attached")  # type: ignore[arg-type]


async def drive(
    app: MeasuredApp, client: FeedClient, keys: list[float], help_keys: list[float]
) -> None:
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause(0.5)
        app.w_pipeline.focus()  # arrow keys move through the phases
        await pilot.pause(0.1)
        while not client.done.is_set():
            await asyncio.sleep(0.4)
            if KEYS:
                for key in ("down", "up"):
                    keys.append(await cursor_key_to_render(app, key))
                for key, opened in (("question_mark", True), ("escape", False)):
                    help_keys.append(await key_to_render(app, key, opened))
        await pilot.pause(0.5)


def report_figures(
    app: MeasuredApp,
    client: FeedClient,
    keys: list[float],
    help_keys: list[float],
    prefix: str = "console",
) -> None:
    latencies = [app.shown[seq] - at for seq, at in client.emitted.items() if seq in app.shown]
    start = min(client.emitted.values(), default=0.0)
    steady = [  # after the first second: the console's first layout of 5,000 nodes is done
        app.shown[seq] - at
        for seq, at in client.emitted.items()
        if seq in app.shown and at >= start + 1.0
    ]
    lines = client.lines
    report(f"{prefix}.nodes", len(app.state.nodes), "nodes")
    report(f"{prefix}.events", len(client.emitted), "events")
    report(f"{prefix}.events_shown", len(latencies), "events")
    report(f"{prefix}.log_lines_per_second", lines / SECONDS, "lines/s")
    report(f"{prefix}.event_to_screen_p50", percentile(latencies, 50) * 1000, "ms")
    report(f"{prefix}.event_to_screen_p99", percentile(latencies, 99) * 1000, "ms")
    report(f"{prefix}.event_to_screen_after_1s_p99", percentile(steady, 99) * 1000, "ms")
    report(f"{prefix}.key_to_render_p50", percentile(keys, 50) * 1000, "ms")
    report(f"{prefix}.key_to_render_p99", percentile(keys, 99) * 1000, "ms")
    report(f"{prefix}.help_screen_key_to_render_p50", percentile(help_keys, 50) * 1000, "ms")
    report(f"{prefix}.help_screen_key_to_render_p99", percentile(help_keys, 99) * 1000, "ms")
    report(f"{prefix}.peak_rss", peak_rss_mb(), "MB")


def main() -> None:
    """`bench_console.py [SITES COMPUTES] [--attached]`: --attached reads the events through a
    control socket, as a console attached to a detached engine does. Without arguments: 10 x
    1,000 computes (10,011 nodes), in process and then attached, each in its own process."""
    if not sys.argv[1:]:
        for extra in ([], ["--attached"]):
            subprocess.run([sys.executable, __file__, "10", "1000", *extra], check=True)
        return
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sites, computes = (int(a) for a in (args[:2] or ("10", "1000")))
    with tempfile.TemporaryDirectory(prefix="rollgate-bench-console-") as tmp:
        path = scale_inventory_file(Path(tmp), sites=sites, computes=computes)
        inventory = load_inventory(path)
        asyncio.run(run(build_plan(inventory), "--attached" in sys.argv, str(path)))


if __name__ == "__main__":
    main()
