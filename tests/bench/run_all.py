"""Run every benchmark, each in its own process, and print one figure per line.

    python tests/bench/run_all.py            # all, about 40 minutes on 2 cores (the large
                                             # lab over SSH with a 3 s API is 18 of them)
    python tests/bench/run_all.py engine     # only those whose name contains "engine"

Figures are `name: value unit`. The SSH benchmark needs Debian's openssh-server (sshd) and
makes its own virtualenv with ansible-core and parallel-ssh once (~/.cache/rollgate-bench).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("startup", "models", "engine", "journal", "console", "ssh_fanout", "large_lab")


def main() -> int:
    wanted = [b for b in BENCHMARKS if not sys.argv[1:] or any(a in b for a in sys.argv[1:])]
    failed = []
    for name in wanted:
        print(f"# bench_{name}", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / f"bench_{name}.py")], cwd=HERE)
        print(f"# bench_{name} took {time.perf_counter() - start:.0f}s", flush=True)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
