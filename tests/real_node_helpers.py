"""One keystone node on a real OpenSSH server, for tests that drive Rollgate over SSH to it:
its inventory (every action a harmless stand-in but the backup, which the test chooses) and a
headless run of it against the lab's API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.api_helpers import lab_api, openstack_section

STAND_INS = ("keystone:keys-backup", "status-check", "keystone:doctor", "package-source",
             "upgrade-packages", "keystone:db-expand", "restart", "verify-running",
             "keystone:db-contract", "keystone:db-check")  # fmt: skip


def assert_stood_in(path: Path, actions: dict[str, str]) -> None:
    """The node is this machine: every command the plan would run on it must be one of the
    test's stand-ins (a new recipe action, run for real, once upgraded this machine's
    packages: apt-get dist-upgrade as root)."""
    from rollgate.core.inventory import load_inventory
    from rollgate.core.plan import build_plan

    # allow-restarts only removes a policy-rc.d Rollgate marked (the stood-in install writes
    # none) and puts back one it kept aside: harmless here, and what the cleanup tests read
    harmless = {"allow-restarts"}
    real = sorted(
        {
            s.action
            for s in build_plan(load_inventory(path)).steps
            if s.executor == "ssh"
            and s.action not in actions
            and s.action not in harmless
            and f"{s.service}:{s.action}" not in actions
        }
    )
    assert not real, f"these steps would run on this machine for real; stand them in: {real}"


def keystone_inventory(
    work: Path, cloud: str, ssh: str, address: str, backup: str, installed: int = 28
) -> Path:
    """The inventory: keystone 27 (2025.1) before, `installed` read by the version probe (27
    for `check`, 28 for a run's verification); no MySQL on the node, so the backup's and
    the triggers' pre-flight reads say what a database server would."""
    actions = {
        "db-backup": backup,
        **{a: "true" for a in STAND_INS},
        "record-version": "echo 2:27.0.0-0ubuntu1",
        "verify-version": f"echo 2:{installed}.0.0-0ubuntu1",
        "running-version": "echo apache2 keystone 2:28.0.0-0ubuntu1 pid 4242",
        "keystone:schema-version": "echo e8725d6fa226",
        "backup-credentials": "true",
        "database-sizes": "printf 'keystone\\t1\\n'",
        "binlog-settings": "printf '0\\t0\\n'",
        # never the machine's own apt: the node is this machine
        "upgrade-node": "true",
        "left-behind": "echo 0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.",
    }
    lines = "".join(f"    {k}: {v!r}\n" for k, v in actions.items())
    path = work / "inventory.yaml"
    path.write_text(
        f"cloud: {cloud}\n"
        'upgrade: {from: "2025.1", to: "2025.2"}\n'
        f"ssh: {ssh}\n"
        "shared: {identity: {site: one}}\n"
        f"sites:\n  one:\n    nodes:\n      - {{name: k1, address: {address}, roles: [keystone]}}\n"
        "policy: {gates: none, step_timeout: 60, transport_retries: 1, start_grace: 0}\n"
        + openstack_section(work)
        + f"recipe:\n  variables: {{job_dir: {work / 'jobs'}}}\n  actions:\n{lines}"
    )
    assert_stood_in(path, actions)
    return path


def headless_run(
    inventory: Path, work: Path, journal: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`rollgate run --headless --auto-approve` of the inventory, its API served by the lab."""
    environment = {**os.environ, "ROLLGATE_STATE_DIR": str(work / "state"), **(env or {})}
    with lab_api(inventory, work):
        return subprocess.run(
            [sys.executable, "-P", "-m", "rollgate", "run", str(inventory), "--headless",
             "--auto-approve", "--journal", str(journal)],
            env=environment, capture_output=True, text=True, timeout=180,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
