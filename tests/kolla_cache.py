"""The target's kolla-ansible from PyPI, in a virtualenv cached between test runs (under
$XDG_CACHE_HOME/rollgate-tests), for the tests that parse the plan's commands with the real
CLI. One process builds it at a time (a file lock); `python -m tests.kolla_cache` builds it
ahead of the suite, as .ci/run does, so a slow package index never lands inside a test."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from rollgate.core.inventory import load_inventory
from rollgate.core.methods.kolla.plan import plan_values

SAMPLE = Path(__file__).parents[1] / "sample_inventory" / "kolla-site.yaml"
IN_A_TEST = 150.0  # seconds a test may spend building it before it skips (its limit is 180)


class Unavailable(Exception):
    """The virtualenv cannot be built here now (no index, too slow): the reason."""


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "rollgate-tests" / "kolla-ansible"


def kolla_venv(timeout: float = IN_A_TEST) -> Path:
    """The cached virtualenv of the sample's target kolla-ansible, built within `timeout`
    seconds if it is not there yet; Unavailable says why it could not be."""
    values = plan_values(load_inventory(SAMPLE), {"kolla_venv_root": str(cache_root())})
    venv, spec = Path(values["kolla_venv"]), values["kolla_pip_spec"]
    marker = venv / "installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be building it: wait for it
        if marker.is_file() and marker.read_text() == spec:
            return venv
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                           timeout=120)  # fmt: skip
            subprocess.run(
                [str(venv / "bin/pip"), "install", "-q", "--timeout", "30", spec],
                check=True,
                timeout=timeout,
                capture_output=True,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(
                f"installing {spec} from the package index took over {timeout:g}s; warm the "
                "cache first: python -m tests.kolla_cache (.ci/run does)"
            ) from None
        except (subprocess.CalledProcessError, OSError) as exc:
            raise Unavailable(f"cannot install {spec} from the package index ({exc})") from None
        marker.write_text(spec)
        return venv


if __name__ == "__main__":
    try:
        print(kolla_venv(timeout=900))
    except Unavailable as exc:  # the tests skip saying so; CI goes on
        print(f"kolla-ansible cache not built: {exc}", file=sys.stderr)
