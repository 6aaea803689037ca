"""The apt recipe's running-version probe, run for real: real dpkg-query against a dpkg
database, a real process's start time from ps, the .list file's time as dpkg leaves it. Only
systemctl is a stand-in (it names the unit's main process, as `systemctl show` would)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollgate.core.recipes import load_recipe, render

PACKAGE = "bash"  # installed wherever this test runs: its dpkg record is copied, not changed

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("dpkg-query", "ps", "stat"))
    or not Path(f"/var/lib/dpkg/info/{PACKAGE}.list").exists(),
    reason="needs a Debian system (dpkg-query, ps, stat and bash's dpkg record): run on Debian",
)


@pytest.fixture
def admindir(tmp_path: Path) -> Path:
    """A copy of the machine's dpkg database with bash's record (what dpkg-query reads)."""
    base = tmp_path / "dpkg"
    (base / "info").mkdir(parents=True)
    shutil.copy2("/var/lib/dpkg/status", base / "status")
    shutil.copy2(f"/var/lib/dpkg/info/{PACKAGE}.list", base / "info" / f"{PACKAGE}.list")
    return base


@pytest.fixture
def process() -> Iterator[int]:
    """A real process, started now: the unit's main process."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def probe(tmp_path: Path, admindir: Path, pid: int, *pairs: str) -> tuple[int, list[str]]:
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "systemctl").write_text('#!/bin/sh\necho "$PROBE_MAIN_PID"\n')
    (shim / "systemctl").chmod(0o755)
    action = load_recipe("apt").action("nova", "running-version")
    assert action is not None
    units = list(pairs[0::2])
    command = render(action.run, {"units": units, "unit_packages": list(pairs)})
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}",
           "DPKG_ADMINDIR": str(admindir), "PROBE_MAIN_PID": str(pid)}  # fmt: skip
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env,
                          timeout=30)  # fmt: skip
    return done.returncode, done.stdout.splitlines()


def installed_version() -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", PACKAGE], capture_output=True, text=True, check=True
    ).stdout


def test_a_process_started_after_the_install_runs_the_installed_version(
    tmp_path: Path, admindir: Path, process: int
) -> None:
    past = time.time() - 60  # installed a minute ago; the process started just now
    os.utime(admindir / "info" / f"{PACKAGE}.list", (past, past))
    status, lines = probe(tmp_path, admindir, process, "demo", PACKAGE)
    assert (status, lines) == (0, [f"demo {PACKAGE} {installed_version()} pid {process}"])


def test_a_process_older_than_the_install_is_stale(
    tmp_path: Path, admindir: Path, process: int
) -> None:
    """dpkg unpacked the package after the process started (a restart that did not
    happen): the package's version is NOT what runs."""
    later = time.time() + 120
    os.utime(admindir / "info" / f"{PACKAGE}.list", (later, later))
    status, lines = probe(tmp_path, admindir, process, "demo", PACKAGE)
    assert status == 3
    assert lines == [
        f"demo {PACKAGE} stale {installed_version()}: pid {process} started before "
        f"{PACKAGE} {installed_version()} was installed"
    ]


def test_no_main_process_or_no_package_is_said_per_unit(
    tmp_path: Path, admindir: Path, process: int
) -> None:
    status, lines = probe(tmp_path, admindir, 0, "gone", PACKAGE, "other", "no-such-package")
    assert status == 3
    assert lines == [f"gone {PACKAGE} not-running", "other no-such-package not-installed"]
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: ps finds nothing
    status, lines = probe(tmp_path, admindir, dead.pid, "demo", PACKAGE)
    assert (status, lines) == (3, [f"demo {PACKAGE} not-running"])
