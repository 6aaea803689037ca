"""`rollgate serve`: a run's console in a real browser (headless Chromium, driven by
selenium), on 127.0.0.1 behind a token; read-only unless --control, where a key press in the
page approves the gate."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.engine.test_detached import start

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module", autouse=True)
def browser_installed() -> None:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install chromium "
                    "chromium-driver (.ci/run installs them)")  # fmt: skip
    pytest.importorskip("selenium", reason="needs selenium: pip install -e '.[test]'")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(tmp_path: Path, run_id: str, *extra: str) -> Iterator[str]:
    """`rollgate serve` in the background for one use; yields its URL (token included)."""
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path)}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "rollgate", "serve", run_id,
         "--port", str(port), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[0]
        assert url.startswith(f"http://127.0.0.1:{port}/") and len(url.split("/")[3]) >= 24
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


def attached(tmp_path: Path, run_id: str) -> list[str]:
    import asyncio

    from rollgate.core.detach import control_socket
    from rollgate.core.socket_client import SocketClient

    client = SocketClient(control_socket(tmp_path / "runs" / run_id), None, {})
    return list(asyncio.run(client.request({"op": "status"}))["attached"])


def press_in_page(url: str, keys: list[str], ready: Callable[[], bool]) -> None:
    """Open the page, wait until its console is attached to the engine, type `keys`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.keys import Keys

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--enable-unsafe-swiftshader"):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not driver.find_elements(
            "css selector", "textarea.xterm-helper-textarea"
        ):
            time.sleep(0.2)
        while time.monotonic() < deadline and not ready():  # its console process started
            time.sleep(0.2)
        time.sleep(1.0)  # and drew its first screen
        box = driver.find_element("css selector", "textarea.xterm-helper-textarea")
        for key in keys:
            box.send_keys(Keys.ENTER if key == "enter" else key)
            time.sleep(0.5)
    finally:
        driver.quit()


def decisions(tmp_path: Path, run_id: str) -> list[str]:
    text = (tmp_path / "runs" / run_id / "journal.jsonl").read_text()
    return [line for line in text.splitlines() if '"type":"gate-decided"' in line]


def test_a_browser_approves_a_gate_with_control_and_only_watches_without(tmp_path: Path) -> None:
    run_id = start(tmp_path)
    for url in serve(tmp_path, run_id):  # read-only
        origin = url.rsplit("/", 2)[0]
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(origin + "/", timeout=5)
        assert missing.value.code == 404  # no token, no console
        press_in_page(url, ["a", "enter"], lambda: bool(attached(tmp_path, run_id)))
        time.sleep(1.5)
        assert decisions(tmp_path, run_id) == []
    for url in serve(tmp_path, run_id, "--control"):
        press_in_page(url, ["a", "enter"], lambda: bool(attached(tmp_path, run_id)))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not decisions(tmp_path, run_id):
            time.sleep(0.2)
        decided = decisions(tmp_path, run_id)
        assert len(decided) == 1 and '"decision":"approve"' in decided[0]
    subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", "abort", run_id],
        env={**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path)}, capture_output=True,
        timeout=60,
    )  # fmt: skip
