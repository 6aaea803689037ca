"""The lab's OpenStack API alone, for tests whose nodes are real (an OpenSSH server on
loopback): it answers for the inventory's cloud from a thread of its own while the test
drives Rollgate in another process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rollgate.core.inventory import load_inventory
from rollgate.core.lab import Lab
from rollgate.core.lab.api import serve_api

CLOUD = "rollgate-lab"


def openstack_section(work: Path) -> str:
    """The inventory lines that point Rollgate at the API lab_api serves from `work`."""
    return f"openstack: {{cloud: {CLOUD}, clouds_yaml: {work / 'clouds.yaml'}}}\n"


@contextmanager
def lab_api(inventory: Path, work: Path) -> Iterator[Path]:
    """Serve the lab's API for `inventory`'s cloud (at its `from` release, every service
    running) until the block ends; yields its clouds.yaml (written to `work`)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    found: dict[str, Any] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            lab = await Lab.start(load_inventory(inventory), serve=False, time_scale=0.0)
            found["lab"] = lab
            found["clouds"] = await serve_api(lab, work)

        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # said in the test's thread
            found["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="lab-api", daemon=True)
    thread.start()
    assert ready.wait(30), "the lab's API did not start within 30 s"
    if "error" in found:
        raise found["error"]
    try:
        yield found["clouds"]
    finally:

        async def stop() -> None:
            await found["lab"].close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
