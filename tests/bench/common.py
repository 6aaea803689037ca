"""Shared by the benchmarks: printing figures, peak memory, the tools virtualenv."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOOLS = Path(os.environ.get("ROLLGATE_BENCH_TOOLS", Path.home() / ".cache/rollgate-bench/tools"))
TOOL_PACKAGES = ("ansible-core", "parallel-ssh")


def report(name: str, value: float, unit: str) -> None:
    """One figure per line, `name: value unit`, as run_all.py collects them."""
    if isinstance(value, int):
        text = str(value)
    elif abs(value) < 0.01:
        text = f"{value:.4f}"
    elif abs(value) < 10:
        text = f"{value:.3f}"
    elif abs(value) < 1000:
        text = f"{value:.1f}"
    else:
        text = f"{value:.0f}"
    print(f"{name}: {text} {unit}", flush=True)


@contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t: ...` then t[0] holds the seconds taken."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def peak_rss_mb() -> float:
    """This process's own peak resident memory. On Linux, VmHWM: ru_maxrss also keeps the
    peak of the process it was forked from (the kernel carries it across exec), so a replay
    started by the benchmark that wrote the journal reported the writer's 433 MB as its own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def tools_venv() -> Path:
    """The benchmark's own virtualenv with ansible-core and parallel-ssh (made once)."""
    python = TOOLS / "bin" / "python"
    marker = TOOLS / ".complete"
    if not marker.exists():
        print(f"# creating {TOOLS} with {', '.join(TOOL_PACKAGES)} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *TOOL_PACKAGES],
            check=True,
        )
        marker.touch()
    return TOOLS
