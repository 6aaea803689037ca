"""The API probe: every second, one read call to each API (as a user of the cloud would make
it), recording each failure, for the whole upgrade."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CALLS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda c: c.identity.get("/projects"),
    "image": lambda c: c.image.get("/images"),
    "placement": lambda c: c.placement.get("/resource_providers"),
    "compute": lambda c: c.compute.get("/servers"),
    "volume": lambda c: c.block_storage.get("/volumes"),
}


@dataclass
class Probe:
    connect: Callable[[], Any]
    interval: float = 1.0
    ticks: int = 0
    failures: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Probe:
        self._thread = threading.Thread(target=self._run, name="api-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        conn = self.connect()
        while not self._stop.is_set():
            started = time.monotonic()
            for api, call in CALLS.items():
                try:
                    response = call(conn)
                    if response.status_code >= 400:
                        raise RuntimeError(f"HTTP {response.status_code}")
                except Exception as exc:  # any failure is what we count
                    self.failures.setdefault(api, []).append((time.time(), str(exc)[:200]))
            self.ticks += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def unavailable_seconds(self) -> dict[str, float]:
        """Seconds each API failed its call (one call a second)."""
        return {api: len(self.failures.get(api, [])) * self.interval for api in CALLS}
