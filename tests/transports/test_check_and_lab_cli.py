"""`rollgate check` and `rollgate lab` as an operator runs them against the lab."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab_helpers import lab_inventory_file

pytestmark = pytest.mark.integration


def rollgate(tmp_path: Path, *args: str, **popen: object) -> subprocess.Popen[str]:
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-c", "from tui.cli import main; main()", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        **popen,
    )  # type: ignore[call-overload]


def test_check_passes_on_a_healthy_lab(tmp_path: Path) -> None:
    out, err = rollgate(tmp_path, "check", str(lab_inventory_file(tmp_path))).communicate(
        timeout=120
    )
    assert "5/5 nodes reachable with verified host keys" in out, out + err
    assert out.rstrip().endswith("0 blocking, 0 warnings: ready to run")


def test_check_reports_an_unreachable_node_and_a_failing_status_check(tmp_path: Path) -> None:
    proc = rollgate(
        tmp_path,
        "check",
        str(lab_inventory_file(tmp_path)),
        "--fault",
        "unreachable:cmp2",
        "--fault",
        "fail:ctl1:cinder-status upgrade check:2",
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    rows = [line for line in out.splitlines() if "✘ blocks" in line]
    assert any("cmp2" in r and "connection refused" in r for r in rows), out
    assert any("cinder-status" in r and "failure (exit 2)" in r for r in rows), out
    assert "4/5 nodes reachable" in out


def test_lab_serves_until_interrupted_and_says_how_to_reach_it(tmp_path: Path) -> None:
    proc = rollgate(tmp_path, "lab", str(lab_inventory_file(tmp_path)), "--time-scale", "0")
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C stops it."):
            break
    text = "".join(lines)
    assert "ssh -i " in text and "UserKnownHostsFile=" in text
    assert "OS_CLIENT_CONFIG_FILE=" in text and "compute service list" in text
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "lab stopped" in out
