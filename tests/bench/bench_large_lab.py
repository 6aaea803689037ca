"""A cloud at real size over the lab's real SSH and HTTP: one site of N computes upgraded in
batches of 50 (sample_inventory/lab-large.yaml's shape), with the API answering each call
after L seconds (`--fault api-slow:large:L`), and in process. Prints, per run: whether it
exited 0 with every compute upgraded, its wall time and peak RSS.

    python tests/bench/bench_large_lab.py                   # 1,000 computes: 3 s, 0 s, in process
    python tests/bench/bench_large_lab.py 200:1 200:0       # other sizes:latencies

The wall time should grow with the batches, not with the latency times the computes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report

from tests.bench.scale import compute_blocks

LARGE = ROOT / "sample_inventory" / "lab-large.yaml"


def inventory(computes: int, where: Path) -> Path:
    """lab-large.yaml with `computes` computes (250 per loopback /24)."""
    text = LARGE.read_text()
    head, _, _ = text.partition("      - name: large-cmp[")
    tail = text[text.index("policy:") :]
    blocks = [
        f"      - name: large-cmp[{first:04d}:{last:04d}]\n"
        f"        address: 127.43.{third}.[1:{count}]\n"
        "        roles: [nova-compute, neutron-l2-agent]\n        az: large-az1\n"
        for first, last, third, count in compute_blocks(computes)
    ]
    path = where / f"large-{computes}.yaml"
    path.write_text(head + "".join(blocks) + tail)
    return path


def run(computes: int, latency: float | None) -> None:
    """latency None: in process (no SSH, no HTTP); else over SSH and HTTP with api-slow."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = inventory(computes, work)
        args = ["--lab-inprocess"] if latency is None else (
            ["--fault", f"api-slow:large:{latency:g}"] if latency else [])  # fmt: skip
        env = {**os.environ, "ROLLGATE_STATE_DIR": str(work / "state")}
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "rollgate", "run", str(path),
             "--headless", "--auto-approve", "--time-scale", "0", *args],
            capture_output=True, text=True, env=env, cwd=work,
        )  # fmt: skip
        wall = time.perf_counter() - start
        rss_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
        journal = next((work / "state" / "runs").glob("*/journal.jsonl"))
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "rollgate", "report", str(journal), "--format", "json"],
                capture_output=True, text=True, env=env,
            ).stdout
        )  # fmt: skip
        nodes = status.get("nodes") or {}
        upgraded = sum(1 for n, s in nodes.items() if "cmp" in n and s == "done")
    where = "in process" if latency is None else f"SSH+HTTP, API {latency:g}s/call"
    name = f"large lab {computes} computes, {where}"
    report(f"{name}: exit status", done.returncode, "")
    report(f"{name}: computes upgraded", upgraded, f"of {computes}")
    report(f"{name}: wall", wall, "s")
    report(f"{name}: peak RSS", rss_mb, "MB")


def main() -> int:
    cases = sys.argv[1:] or ["1000:3", "1000:0", "1000:inprocess"]
    for case in cases:
        size, _, latency = case.partition(":")
        run(int(size), None if latency == "inprocess" else float(latency or 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
