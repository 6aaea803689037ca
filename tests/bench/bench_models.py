"""The models at real size: `rollgate validate` and `rollgate plan` of 20,000 computes (20 sites
x 1,000) and the plan of 10 sites x 1,000, each as a fresh process, with its peak RSS.

A user runs these as commands, so they are measured as commands: from launch to exit.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report  # type: ignore[import-not-found]

from tests.bench.scale import scale_inventory_file


def command(name: str, argv: list[str]) -> None:
    """Run `rollgate ARGV` alone in a child; report its wall time and peak RSS."""
    script = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "took = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(done.returncode, took, peak)\n"
    )
    # a child per command, so each peak is its own (RUSAGE_CHILDREN keeps the largest)
    out = subprocess.run(
        [sys.executable, "-c", script, sys.executable, "-P", "-m", "rollgate", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    status, took, peak = int(out[0]), float(out[1]), float(out[2])
    if status != 0:
        raise SystemExit(f"{name}: rollgate {' '.join(argv)} exited {status}")
    report(f"models.{name}", took, "s")
    report(f"models.{name}_peak_rss", peak, "MB")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rollgate-bench-models-") as tmp:
        (Path(tmp) / "big").mkdir()
        (Path(tmp) / "ten").mkdir()
        big = scale_inventory_file(Path(tmp) / "big", sites=20, computes=1000)
        ten = scale_inventory_file(Path(tmp) / "ten", sites=10, computes=1000)
        start = time.perf_counter()
        command("validate_20000", ["validate", str(big)])
        command("plan_20000", ["plan", str(big), "--format", "json"])
        command("plan_tree_20000", ["plan", str(big)])  # the tree a terminal shows
        command("plan_10x1000", ["plan", str(ten), "--format", "json"])
        report("models.total", time.perf_counter() - start, "s")


if __name__ == "__main__":
    main()
