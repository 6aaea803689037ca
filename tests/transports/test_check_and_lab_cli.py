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
    # wide enough that a row's detail is one line
    env = {**os.environ, "ROLLGATE_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "600"}
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "rollgate", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        **popen,
    )  # type: ignore[call-overload]


def test_check_passes_on_a_healthy_lab(tmp_path: Path) -> None:
    """A compute the APIs list beyond the inventory, declared unmanaged: shown, not blocking."""
    inventory = lab_inventory_file(
        tmp_path, unmanaged="{host: cmp9, reason: 'retired next month, CHG-77'}"
    )
    out, err = rollgate(
        tmp_path, "check", str(inventory), "--fault", "unlisted:one:cmp9:nova-compute"
    ).communicate(timeout=120)
    assert "5/5 nodes reachable with verified host keys" in out, out + err
    # the lab's source, 2025.1, is unmaintained since 2026-10-02: a warning, not a blocker
    assert out.rstrip().endswith("0 blocking, 1 warnings: ready to run")
    assert "2025.1 (Epoxy) is unmaintained since 2026-10-02" in out
    declared = [line for line in out.splitlines() if "unmanaged" in line and "✔" in line]
    assert (
        declared
        and "cmp9 nova-compute: not upgraded by Rollgate (declared: retired" in (declared[0])
    ), out


def test_check_reports_an_unreachable_node_and_a_failing_status_check(tmp_path: Path) -> None:
    proc = rollgate(
        tmp_path,
        "check",
        str(lab_inventory_file(tmp_path)),
        "--fault",
        "unreachable:cmp2",
        "--fault",
        "fail:ctl1:cinder-status upgrade check:2",
        "--fault",
        "unlisted:one:cmp9:nova-compute",
        "--fault",
        "unlisted:one:cmp1:cinder-volume",
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    rows = [line for line in out.splitlines() if "✘ blocks" in line]
    assert any("cmp2" in r and "connection refused" in r for r in rows), out
    assert any("cinder-status" in r and "failure (exit 2)" in r for r in rows), out
    scope = [r for r in rows if " scope " in r]
    assert (
        scope
        and "RegionOne lists 2 service(s) the inventory does not upgrade: cmp1 "
        "cinder-volume (the inventory does not give it cinder-volume); cmp9 nova-compute "
        "(a host the inventory does not have)"
        in scope[0]
    ), out
    assert "4/5 nodes reachable" in out


def test_check_refuses_a_package_the_upgrade_needs_that_is_held(tmp_path: Path) -> None:
    proc = rollgate(
        tmp_path, "check", str(lab_inventory_file(tmp_path)), "--fault", "hold:cmp2:nova-compute"
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    rows = [line for line in out.splitlines() if "✘ blocks" in line]
    assert any("cmp2" in r and "nova-compute held" in r for r in rows), out
    assert "apt-mark unhold nova-compute" in out


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
    # what it says works: discover reads the served lab as any cloud of clouds.yaml
    config = text.split("OS_CLIENT_CONFIG_FILE=", 1)[1].split()[0]
    found = subprocess.run(
        [sys.executable, "-P", "-m", "rollgate", "discover", "--os-cloud", "rollgate-lab"],
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": config}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert all(f"- name: cmp{i}" in found.stdout for i in (1, 2, 3)), found.stdout
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "lab stopped" in out


def check(tmp_path: Path, inventory: Path) -> tuple[int, str]:
    proc = rollgate(tmp_path, "check", str(inventory))
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def test_check_after_a_lab_run_looks_at_the_world_a_new_run_starts_from(tmp_path: Path) -> None:
    inventory = lab_inventory_file(tmp_path)
    run = rollgate(tmp_path, "run", str(inventory), "--headless", "--auto-approve")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    code, out = check(tmp_path, inventory)
    assert code == 0 and out.rstrip().endswith(": ready to run"), out


def test_check_probes_versions_the_way_the_recipe_would(tmp_path: Path) -> None:
    inventory = lab_inventory_file(tmp_path)
    text = inventory.read_text().replace(
        "lab:",
        "recipe:\n  actions:\n    record-version: rpm -q --qf '%{VERSION}' {{package}}\nlab:",
    )
    inventory.write_text(text)
    code, out = check(tmp_path, inventory)
    assert code == 1, out
    assert "not installed (sh: 1: rpm: command not found)" in out  # the override ran


def test_check_says_ready_to_run_for_a_kolla_cloud(tmp_path: Path) -> None:
    code, out = check(tmp_path, lab_inventory_file(tmp_path, kolla=True))
    assert code == 0, out
    assert "nova-status" in out and "failure" not in out  # run in the containers
    assert "no verify-version action" in out  # said, not hidden
    assert "installs it (kolla-ansible>=22,<23)" in out  # the deploy host, read over SSH
    assert "/etc/kolla/multinode: the same" in out and "enable_mariabackup is on" in out
    assert "no 2026.1 image pulled yet" in out  # a warning: the preparation pulls them
    assert out.rstrip().endswith(": ready to run")


def test_unverified_host_keys_are_warned_about_on_a_lab_check(tmp_path: Path) -> None:
    proc = rollgate(tmp_path, "check", str(lab_inventory_file(tmp_path)), "--no-verify-host-keys")
    out, err = proc.communicate(timeout=120)
    assert "WARNING: SSH host keys are NOT verified" in out, out + err
    assert "with host keys NOT verified" in out
    assert "with verified host keys" not in out and "host key verified" not in out


def test_discover_prints_the_cloud_as_its_apis_list_it(tmp_path: Path) -> None:
    """The skeleton comes from the APIs: a compute the inventory does not have is in it, with
    the address its hypervisor reports; what the APIs cannot say is marked TODO."""
    import yaml

    inventory = lab_inventory_file(tmp_path, faults=["unlisted:one:cmp9:nova-compute"])
    out_file = tmp_path / "found.yaml"
    proc = rollgate(tmp_path, "discover", str(inventory), "-o", str(out_file))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "5 hosts in 2 regions; fill in its TODOs" in out
    found = yaml.safe_load(out_file.read_text())
    one = found["sites"]["regionone"]
    nodes = {n["name"]: n for n in one["nodes"]}
    assert sorted(nodes) == ["cmp1", "cmp2", "cmp3", "cmp9", "ctl1"]
    assert nodes["cmp1"]["roles"] == ["neutron-l2-agent", "nova-compute"]
    assert nodes["cmp1"]["address"].endswith(".10") and nodes["cmp9"]["address"] == "TODO"
    assert nodes["ctl1"]["roles"] == ["cinder-scheduler", "cinder-volume", "nova-conductor",
                                      "nova-scheduler"]  # fmt: skip
    assert found["shared"]["identity"]["site"] in found["sites"]
    assert found["upgrade"] == {"from": "2025.1", "to": "TODO"}
    assert "add the API roles it serves" in out_file.read_text()


def test_check_says_one_finding_of_many_nodes_once_with_every_node() -> None:
    """333 nodes behind one jump host whose key is unknown: one row naming them all (as
    ranges, with the count), not 333 rows of the same words."""
    from rollgate.core.hostrange import compress
    from rollgate.core.preflight import Finding
    from rollgate.tui.commands.check import grouped

    same = "the host key of the jump host bastion:22 cannot be checked"
    findings = [Finding(f"cmp{i:03}", "reachable", False, same) for i in range(1, 334)]
    findings.insert(5, Finding("ctl1", "reachable", False, "connection refused"))
    findings.append(Finding("ctl2", "reachable", True, same))  # not the same result
    rows = grouped(findings)
    assert [(compress(targets), f.detail, f.ok) for targets, f in rows] == [
        ("cmp[001:333]", same, False),
        ("ctl1", "connection refused", False),
        ("ctl2", same, True),
    ]
