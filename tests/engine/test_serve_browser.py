"""`rollgate serve`: a run's console in a real browser (headless Chromium, driven by
selenium), on 127.0.0.1 behind a token; read-only unless --control, where a key press in the
page approves the gate."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def _stat(pid: str) -> list[str]:
    """/proc/PID/stat's fields after the command name (ppid is [1], the session [3])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text.rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else []
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def in_session(sid: int) -> list[str]:
    """The command lines of the live processes of session `sid` (zombies are gone already)."""
    found = []
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else []
        if fields and int(fields[3]) == sid and fields[0] != "Z":
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def open_page(url: str) -> Any:
    """A headless Chromium on `url`; its chromedriver's pid is driver.service.process.pid."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.get(url)
    return driver


def kill_browser(driver: Any) -> None:
    """Abruptly: the tab says nothing to the server."""
    browser = driver.service.process.pid
    for pid in [*descendants(browser), browser]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def until(probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not probe():
        time.sleep(0.2)
    return probe()


def test_a_tab_killed_and_serve_stopped_leave_no_console_behind(tmp_path: Path) -> None:
    """A browser killed mid-session (no goodbye over the websocket): its console ends with
    the session. Another page's console is live when serve alone gets SIGTERM: nothing serve
    started is left. The console `--control --name` attached is journalled with the login
    and the name."""
    run_id = start(tmp_path)
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path)}
    port = free_port()
    serving = subprocess.Popen(
        [sys.executable, "-P", "-m", "rollgate", "serve", run_id, "--port", str(port),
         "--control", "--name", "ann"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert serving.stdout is not None
        url = serving.stdout.readline().split()[0]
        until(lambda: _answers(url), 20)
        first = open_page(url)
        try:
            assert until(lambda: attached(tmp_path, run_id), 30)
            assert [a.split(" (")[1] for a in attached(tmp_path, run_id)] == ["ann)"]
        finally:
            kill_browser(first)
        assert until(lambda: not attached(tmp_path, run_id), 20)  # ended with its session
        second = open_page(url)
        try:
            assert until(lambda: attached(tmp_path, run_id), 30)
            os.kill(serving.pid, 15)  # serve alone, not its group, its page still open
            serving.wait(timeout=30)
            assert until(lambda: not in_session(serving.pid), 15), in_session(serving.pid)
        finally:
            kill_browser(second)
        assert serving.stdout.read() == ""  # no access log under the URL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serving.pid, 9)
        subprocess.run([sys.executable, "-P", "-m", "rollgate", "abort", run_id], env=env,
                       capture_output=True, timeout=60)  # fmt: skip


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except (urllib.error.URLError, ConnectionError):
        return False


def test_a_console_serve_started_ends_when_serve_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves serve no time to end its consoles: each ends itself (the parent-death
    signal die_with_server asks for), rather than spinning on as an orphan."""
    child = (
        "import time; from rollgate.tui.commands.serve import die_with_server; "
        "die_with_server(); print('ready', flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import os, subprocess, sys, time; "
         "env = {**os.environ, 'ROLLGATE_SERVED_BY': str(os.getpid())}; "
         f"p = subprocess.Popen([sys.executable, '-c', {child!r}], env=env); "
         "print(p.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        console = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        os.kill(parent.pid, 9)
        parent.wait(timeout=10)
        assert until(lambda: not _stat(str(console)) or _stat(str(console))[0] == "Z", 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, 9)
