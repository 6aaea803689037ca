"""Run the `rollgate` command line as a user would, in a subprocess with its own state dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROLLGATE = [sys.executable, "-P", "-m", "rollgate"]


def rollgate(state: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(state), "COLUMNS": "200"}
    return subprocess.run(
        [*ROLLGATE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
