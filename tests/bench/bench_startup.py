"""Start-up: `rollgate --help`, and the time to the console's first frame on the demo plan."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from common import ROOT, report, timed  # type: ignore[import-not-found]

RUNS = 7


def help_time() -> float:
    """The median of several `rollgate --help` runs, each a fresh interpreter."""
    times = []
    for _ in range(RUNS):
        with timed() as t:
            subprocess.run(
                [sys.executable, "-P", "-m", "rollgate", "--help"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        times.append(t[0])
    return statistics.median(times)


FIRST_FRAME = """
import asyncio, sys, time
start = time.perf_counter()
from rollgate.core.inventory import load_inventory
from rollgate.core.plan import build_plan
from rollgate.core.client import ClientBase
from rollgate.tui.app import RollgateApp

class Quiet(ClientBase):
    read_only = True
    def __init__(self, plan):
        self.plan = plan
    async def events(self, from_seq=1):
        if False:
            yield None
    async def send(self, command):
        return None

async def main():
    plan = build_plan(load_inventory("sample_inventory/lab-two-sites.yaml"))
    app = RollgateApp(Quiet(plan), operator="bench")
    async with app.run_test(size=(150, 44)) as pilot:
        done = asyncio.get_running_loop().create_future()
        app.call_after_refresh(lambda: done.done() or done.set_result(None))
        await done
        print(time.perf_counter() - start)

asyncio.run(main())
"""


def first_frame_time() -> float:
    """From launching a fresh interpreter to the first painted frame of the demo plan."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", FIRST_FRAME],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # printed once the first frame is painted
        times.append(time.perf_counter() - start)
        proc.wait()
    return statistics.median(times)


def main() -> None:
    report("startup.help", help_time(), "s")
    report("startup.console_first_frame", first_frame_time(), "s")


if __name__ == "__main__":
    main()
