"""`rollgate check` for the virtualenv method, over real OpenSSH: what the preparation will
find on a node (the target virtualenv, the interpreter, the constraints, the disk)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from rollgate.core.inventory import Inventory, load_inventory
from rollgate.core.methods.venv.plan import plan_values
from rollgate.core.methods.venv.preflight import check_node
from rollgate.core.preflight import Finding, check_status
from rollgate.core.transports.ssh import SshExecutor
from tests.sshd_helpers import Sshd, running_sshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    """One OpenSSH server for the module (each test its own job and work directories)."""
    with running_sshd(1, "127.79") as server:
        yield server


def inventory(sshd: Sshd, python: str = sys.executable) -> Inventory:
    path = sshd.work / "inventory.yaml"
    path.write_text(
        "cloud: venvs\n"
        'upgrade: {from: "2025.2", to: "2026.1"}\n'
        "method: venv\n"
        f"ssh: {{user: root, port: {sshd.port}, key: {sshd.work / 'client_key'}, "
        f"known_hosts: {sshd.known_hosts}}}\n"
        "shared: {identity: {site: one}}\n"
        f"sites:\n  one:\n    nodes:\n      - {{name: k1, address: {sshd.addresses[0]}, "
        "roles: [keystone]}\n"
        f"recipe:\n  variables: {{venv_root: {sshd.work / 'venvs'}, "
        f"constraints: {sshd.work / 'constraints'}, python: {python}}}\n"
    )
    return load_inventory(path)


async def findings(inv: Inventory) -> dict[str, Finding]:
    """The node's virtualenv findings and its keystone-status check, by check name."""
    ssh = SshExecutor()
    try:
        found = await check_node(ssh, inv, inv.nodes[0]) + await check_status(ssh, inv)
        return {f.check: f for f in found}
    finally:
        await ssh.close()


async def test_a_node_the_preparation_can_build_on_and_one_it_cannot(sshd: Sshd) -> None:
    inv = inventory(sshd)
    found = await findings(inv)
    assert found["2026.1 virtualenv"].detail == "the preparation installs it (before the window)"
    assert found["venv module"].ok
    disk = found["disk for the virtualenv"]
    assert disk.ok and "GiB free on /" in disk.detail  # this machine has tens of GiB free
    status = found["keystone-status"]  # the target's check: it comes with the virtualenv
    assert not status.blocking and status.detail.startswith("not checked: the 2026.1 virtualenv")
    missing = found["2026.1 upper-constraints"]  # the directory has no file for 2026.1
    assert not missing.ok and missing.blocking and "pip install -c" in missing.detail
    (sshd.work / "constraints").mkdir()
    (sshd.work / "constraints" / "2026.1").write_text("keystone===28.0.0\n")
    found = await findings(inventory(sshd, python="/bin/false"))  # no venv module there
    assert found["2026.1 upper-constraints"].ok
    assert not found["venv module"].ok and "python3-venv" in found["venv module"].detail


async def test_the_target_virtualenv_kept_refused_or_built_again(sshd: Sshd) -> None:
    inv = inventory(sshd)
    target = sshd.work / "venvs" / "2026.1"
    target.mkdir(parents=True)
    found = await findings(inv)  # a directory without its marker: a build that stopped
    assert found["2026.1 virtualenv"].ok and "builds it again" in found["2026.1 virtualenv"].detail
    wanted = plan_values(inv, {})["requirements"]  # what the plan builds it with
    (target / ".rollgate-ready").write_text("".join(f"{r} " for r in wanted))
    (target / "bin").mkdir()
    (target / "bin" / "keystone-status").write_text("#!/bin/sh\necho upgrade check: $1\n")
    (target / "bin" / "keystone-status").chmod(0o755)
    found = await findings(inv)
    assert list(found) == ["2026.1 virtualenv", "keystone-status"]
    assert found["2026.1 virtualenv"].ok  # kept as it is: nothing else to check for it
    assert found["keystone-status"].ok and found["keystone-status"].detail == "success"
    (target / ".rollgate-ready").write_text("keystone<27 ")
    refused = (await findings(inv))["2026.1 virtualenv"]
    assert not refused.ok and refused.blocking and "deletes nothing" in refused.detail
