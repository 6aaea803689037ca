"""What every test shares, made per pytest-xdist worker so tests run in parallel: the state and
settings directories Rollgate writes when a test does not name its own, and the loopback
networks tests bind (tests/lab_helpers.py, tests/sshd_helpers.py). Nothing a test uses depends
on what an earlier run left on the machine."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator

import pytest


def worker_index() -> int:
    """This worker's number (0 without xdist): "gw3" -> 3."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw") or 0)


def stop_engines_under(*places: str) -> None:
    """End the detached engines (and labs) a test started under `places` and left running:
    a test that fails before it stops its run would otherwise leave one waiting at a gate,
    holding its lab's addresses, for good."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "rollgate" in argv and any(place in arg for arg in argv for place in places):
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)


@pytest.fixture(scope="session", autouse=True)
def private_state_per_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """ROLLGATE_STATE_DIR and ROLLGATE_CONFIG_DIR of this worker's own (children inherit them);
    a test that sets its own keeps it. At the end, no engine a test started is left running."""
    saved = {k: os.environ.get(k) for k in ("ROLLGATE_STATE_DIR", "ROLLGATE_CONFIG_DIR")}
    with tempfile.TemporaryDirectory(prefix=f"rollgate-tests-w{worker_index()}-") as base:
        os.environ["ROLLGATE_STATE_DIR"] = os.path.join(base, "state")
        os.environ["ROLLGATE_CONFIG_DIR"] = os.path.join(base, "config")
        try:
            yield
        finally:
            stop_engines_under(base, str(tmp_path_factory.getbasetemp()))
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
