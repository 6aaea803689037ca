"""The lab behaves like a cloud: openstacksdk sees it, a right plan upgrades it, a wrong one
fails the way a real cloud would."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openstack
import pytest
from openstack import config as os_config

from rollgate.core import events as ev
from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.lab import Lab
from rollgate.core.lab.commands import run_command
from rollgate.core.plan import build_plan
from rollgate.core.releases import find_release
from rollgate.core.transports.real import RealExecutor
from tests.lab_helpers import lab_inventory


@pytest.mark.integration
async def test_openstacksdk_disables_and_enables_compute_services(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path)
    lab = await Lab.start(inv, serve=True)
    try:
        site = lab.effective_inventory.site("one")

        def use_sdk() -> tuple[list[str], str | None, list[str], str]:
            config = os_config.OpenStackConfig(config_files=[site.openstack.clouds_yaml])
            conn = openstack.connection.Connection(
                config=config.get_one(cloud=site.openstack.cloud, region_name=site.region)
            )
            hosts = sorted(s.host for s in conn.compute.services(binary="nova-compute"))
            service = next(iter(conn.compute.services(host="cmp2", binary="nova-compute")))
            conn.compute.disable_service(
                service, host="cmp2", binary="nova-compute", disabled_reason="maintenance"
            )
            after = next(iter(conn.compute.services(host="cmp2", binary="nova-compute")))
            reason = after.disabled_reason
            conn.compute.enable_service(after, host="cmp2", binary="nova-compute")
            again = [s.status for s in conn.compute.services(binary="nova-compute")]
            return (
                hosts,
                reason,
                again,
                conn.compute.get_endpoint_data().max_microversion,
            )

        hosts, reason, statuses, microversion = await asyncio.to_thread(use_sdk)
        assert hosts == ["cmp1", "cmp2", "cmp3"]
        assert reason == "maintenance"
        assert statuses == ["enabled"] * 3
        assert microversion == (2, 100)  # nova-api still at 2025.1
    finally:
        await lab.close()


@pytest.mark.integration
async def test_the_plan_upgrades_every_node_over_ssh_and_http(tmp_path: Path) -> None:
    inv = lab_inventory(tmp_path)
    lab = await Lab.start(inv, serve=True)
    executor = RealExecutor(lab.effective_inventory)
    try:
        plan = build_plan(inv)
        engine = Engine(
            plan, lab.effective_inventory, executor, EngineOptions("t", "t", auto_approve=True)
        )
        assert await asyncio.wait_for(engine.run(), 60) == "complete"
        assert lab.world.all_upgraded()
        units = [u for n in lab.world.nodes.values() for u in n.units.values()]
        assert all(u.code == lab.world.target and u.active for u in units)
        assert all(r.enabled for r in lab.world.services)  # every compute re-enabled
        outputs = [line for e in engine.history if isinstance(e, ev.StepOutput) for line in e.lines]
        assert (
            f"nova-compute on cmp1 disabled: rollgate: upgrading {inv.cloud} to 2025.2" in outputs
        )
    finally:
        await executor.close()
        await lab.close()


# point a node at the target (2025.2) and refresh its lists: packages move only after this;
# and keep the package scripts from restarting services, as the plan does
SWITCH = (
    "add-apt-repository -y cloud-archive:flamingo && apt-get update && "
    "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && env NEEDRESTART_SUSPEND=1"
)


async def run(lab: Lab, node: str, command: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = await run_command(
        lab.world, lab.world.nodes[node], command, lambda s, line: lines.append(line)
    )
    return status, lines


async def test_contracting_before_every_node_runs_new_code_fails(tmp_path: Path) -> None:
    lab = await Lab.start(lab_inventory(tmp_path), serve=False)
    assert (
        await run(
            lab,
            "ctl1",
            f"{SWITCH} apt-get install --only-upgrade -y glance-api",
        )
    )[0] == 0
    assert (await run(lab, "ctl1", "glance-manage db expand"))[0] == 0
    assert (await run(lab, "ctl1", "glance-manage db migrate"))[0] == 0
    status, lines = await run(lab, "ctl1", "glance-manage db contract")
    assert status == 1 and "still run 2025.1 code (ctl1)" in lines[-1]
    assert (await run(lab, "ctl1", "systemctl restart glance-api"))[0] == 0
    assert (await run(lab, "ctl1", "glance-manage db contract"))[0] == 0


async def test_new_code_on_an_old_schema_fails_to_start(tmp_path: Path) -> None:
    lab = await Lab.start(lab_inventory(tmp_path), serve=False)
    await run(
        lab,
        "ctl1",
        f"{SWITCH} apt-get install --only-upgrade -y nova-conductor",
    )
    status, lines = await run(lab, "ctl1", "systemctl restart nova-conductor")
    assert status == 1 and "schema is at 2025.1 but the code is 2025.2" in lines[-1]
    status, lines = await run(lab, "ctl1", "systemctl is-active nova-conductor")
    assert (status, lines) == (3, ["failed"])


async def test_new_conductor_refuses_computes_older_than_n_minus_2(tmp_path: Path) -> None:
    lab = await Lab.start(lab_inventory(tmp_path), serve=False)
    # the computes were left behind by an earlier upgrade: 2024.1 is N-3 for 2025.2
    for node in lab.world.nodes.values():
        if "nova-compute" in node.units:
            node.units["nova-compute"].code = find_release("2024.1")
            node.packages["nova-compute"] = find_release("2024.1")
    # the running release's check cannot know the target's rule (N-2 of 2025.2) ...
    status, lines = await run(lab, "ctl1", "nova-status upgrade check")
    assert status == 0, lines
    await run(
        lab,
        "ctl1",
        f"{SWITCH} apt-get install --only-upgrade -y nova-conductor",
    )
    # ... the target's own check does, before anything restarts
    status, lines = await run(lab, "ctl1", "nova-status upgrade check")
    assert status == 2 and any("Older than N-2 computes" in line for line in lines)
    await run(lab, "ctl1", "nova-manage db sync")
    status, lines = await run(lab, "ctl1", "systemctl restart nova-conductor")
    assert status == 1 and "upgrade the computes first" in lines[-1]


async def test_cinder_sync_refuses_while_previous_migrations_are_pending(tmp_path: Path) -> None:
    lab = await Lab.start(lab_inventory(tmp_path, faults=["cinder-pending:2"]), serve=False)
    status, lines = await run(lab, "ctl1", "cinder-status upgrade check")
    assert status == 2
    await run(
        lab,
        "ctl1",
        f"{SWITCH} apt-get install --only-upgrade -y cinder-api cinder-scheduler",
    )
    status, lines = await run(lab, "ctl1", "cinder-manage db sync")
    assert status == 1 and "online data migrations" in lines[-1]
    codes = [
        (await run(lab, "ctl1", "cinder-manage db online_data_migrations"))[0] for _ in range(3)
    ]
    assert codes == [1, 1, 0]
    assert (await run(lab, "ctl1", "cinder-manage db sync"))[0] == 0


async def test_unknown_commands_never_touch_the_host(tmp_path: Path) -> None:
    lab = await Lab.start(lab_inventory(tmp_path), serve=False)
    marker = tmp_path / "should-not-exist"
    status, lines = await run(lab, "cmp1", f"touch {marker}")
    assert status == 127 and lines == ["sh: 1: touch: command not found"]
    assert not marker.exists()


@pytest.mark.integration
async def test_a_lab_address_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    from rollgate.core.errors import UserError

    inv = lab_inventory(tmp_path)
    node = inv.node("cmp2")
    blocker = socket.socket()
    blocker.bind((node.address, node.ssh.port))
    blocker.listen()
    try:
        with pytest.raises(
            UserError,
            match=rf"cannot start the lab node cmp2 on "
            rf"{node.address}:{node.ssh.port}: .*in use",
        ):
            await Lab.start(inv, serve=True)
    finally:
        blocker.close()


def test_a_lab_inventory_must_use_loopback_addresses(tmp_path: Path) -> None:
    from rollgate.core.inventory import InventoryError, parse_inventory
    from tests.lab_helpers import lab_inventory_text

    text = lab_inventory_text(tmp_path)
    net = text.split("address: ", 1)[1].split(".1,", 1)[0]
    with pytest.raises(
        InventoryError,
        match=r"lab node key1 has address '10\.9\.9\.1': the "
        r"lab only listens on loopback",
    ):
        parse_inventory(text.replace(f"{net}.1,", "10.9.9.1,"), "lab.yaml")


@pytest.mark.integration
async def test_volume_services_are_fenced_when_the_recipe_asks(tmp_path: Path) -> None:
    from rollgate.core.inventory import parse_inventory
    from tests.lab_helpers import lab_inventory_text

    text = lab_inventory_text(tmp_path) + "recipe:\n  variables: {fence_volume_services: 'yes'}\n"
    inv = parse_inventory(text, "fence.yaml")
    plan = build_plan(inv)
    actions = [
        s.action for s in plan.steps if s.role == "cinder-volume" and "/refresh-" not in s.id
    ]
    assert actions[0] == "disable-service" and actions[-1] == "enable-service"
    lab = await Lab.start(inv, serve=True)
    executor = RealExecutor(lab.effective_inventory)
    try:
        engine = Engine(
            plan, lab.effective_inventory, executor, EngineOptions("t", "t", auto_approve=True)
        )
        assert await asyncio.wait_for(engine.run(), 60) == "complete"
        said = [line for e in engine.history if isinstance(e, ev.StepOutput) for line in e.lines]
        assert "cinder-volume on ctl1 disabled" in said and "cinder-volume on ctl1 enabled" in said
        assert all(r.enabled for r in lab.world.services)
    finally:
        await executor.close()
        await lab.close()


async def test_a_lab_killed_mid_run_restarts_with_every_change_it_made(tmp_path: Path) -> None:
    """Each change is one line appended to world.log (the whole world is written at start and
    every few thousand changes), and a restarted lab replays them: nothing a command did is
    lost, and a cloud of thousands of computes is not rewritten after every command."""
    from rollgate.core.lab import Lab
    from rollgate.core.lab.api_actions import cloud_action
    from rollgate.core.lab.commands import run_command
    from tests.lab_helpers import lab_inventory

    inv = lab_inventory(tmp_path, computes=2)
    lab = await Lab.start(inv, serve=False, persist=True)
    world = lab.world
    cmp1 = world.nodes["cmp1"]
    out = lambda *a: None  # noqa: E731
    assert await run_command(world, cmp1, SWITCH, out) == 0
    install = "env NEEDRESTART_SUSPEND=1 apt-get install --only-upgrade -y nova-compute"
    assert await run_command(world, cmp1, install, out) == 0
    args = {"host": "cmp1", "binary": "nova-compute", "reason": "upgrading"}
    assert (await cloud_action(world, "one", "disable-compute", args, out)).exit_status == 0
    log = lab.state_dir / "world.log"
    changes = log.read_text().splitlines()  # a line per change, never the whole world again
    assert 4 <= len(changes) <= 8 and all(len(c) < 2000 for c in changes)
    # no close(): the driver was killed. A new lab restores what the old one had done.
    again = await Lab.start(inv, serve=False, restore=True)
    assert again.world.nodes["cmp1"].packages["nova-compute"] == world.target
    record = again.world.record("one", "cmp1", "nova-compute")
    assert record is not None and record.disabled_reason == "upgrading"
    assert again.world.nodes["cmp2"].packages["nova-compute"] == world.source


async def test_an_install_finds_nothing_new_until_the_source_is_switched_and_refreshed(
    tmp_path: Path,
) -> None:
    lab = await Lab.start(lab_inventory(tmp_path), serve=False)
    install = (
        "env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 "
        "apt-get install --only-upgrade -y nova-compute"
    )
    assert (await run(lab, "cmp1", "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d"))[
        0
    ] == 0
    status, lines = await run(lab, "cmp1", install)
    assert status == 0 and "nova-compute is already the newest version" in lines[-1]
    assert (await run(lab, "cmp1", "add-apt-repository -y cloud-archive:flamingo"))[0] == 0
    status, lines = await run(lab, "cmp1", install)  # the lists do not know it yet
    assert status == 0 and "already the newest version" in lines[-1]
    assert (await run(lab, "cmp1", "apt-get update"))[0] == 0
    status, lines = await run(lab, "cmp1", install)
    assert status == 0 and lines[-1].startswith("Setting up nova-compute (3:32.")
    # a pocket the node's series cannot carry is refused, as add-apt-repository refuses it
    status, lines = await run(lab, "cmp2", "add-apt-repository -y cloud-archive:caracal")
    assert status == 1 and "not a valid cloud archive on noble" in lines[-1]


async def test_an_install_restarts_services_unless_policy_rc_d_and_needrestart_say_no(
    tmp_path: Path,
) -> None:
    """debhelper's postinst restarts a package's units, needrestart restarts them too: new
    nova code then starts on the old schema, fails, and the install fails with it (the plan
    before this rule had no way to know)."""
    lab = await Lab.start(lab_inventory(tmp_path), serve=False)
    switch = "add-apt-repository -y cloud-archive:flamingo && apt-get update"
    assert (await run(lab, "ctl1", switch))[0] == 0
    status, lines = await run(lab, "ctl1", "apt-get install --only-upgrade -y nova-conductor")
    assert status == 100
    assert "schema is at 2025.1 but the code is 2025.2" in "\n".join(lines)
    assert lines[-1] == "E: Sub-process /usr/bin/dpkg returned an error code (1)"
    # policy-rc.d alone is not enough: needrestart restarts what it finds outdated
    block = "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d"
    assert (await run(lab, "ctl1", block))[0] == 0
    install = "apt-get install --only-upgrade -y nova-scheduler"
    assert (await run(lab, "ctl1", install))[0] == 100
    quiet = "env NEEDRESTART_SUSPEND=1 apt-get install --only-upgrade -y nova-api"
    assert (await run(lab, "ctl1", quiet))[0] == 0
    assert (await run(lab, "ctl1", "rm -f /usr/sbin/policy-rc.d"))[0] == 0
    assert not lab.world.nodes["ctl1"].restarts_blocked


@pytest.mark.integration
async def test_a_volume_service_an_operator_disabled_stays_disabled(tmp_path: Path) -> None:
    """Through openstacksdk: fencing volume services leaves one an operator disabled before
    the run (with their reason) as it was, instead of enabling it at the end."""
    from rollgate.core.inventory import parse_inventory
    from tests.lab_helpers import lab_inventory_text

    text = lab_inventory_text(tmp_path) + "recipe:\n  variables: {fence_volume_services: 'yes'}\n"
    inv = parse_inventory(text, "fence.yaml")
    plan = build_plan(inv)
    lab = await Lab.start(inv, serve=True)
    record = lab.world.record("one", "ctl1", "cinder-volume")
    assert record is not None
    record.disabled_reason = "failing disk, ticket 4711"
    executor = RealExecutor(lab.effective_inventory)
    try:
        engine = Engine(
            plan, lab.effective_inventory, executor, EngineOptions("t", "t", auto_approve=True)
        )
        assert await asyncio.wait_for(engine.run(), 60) == "complete"
        said = [line for e in engine.history if isinstance(e, ev.StepOutput) for line in e.lines]
        assert any("cinder-volume on ctl1 left disabled, as the run found it" in s for s in said)
        assert record.disabled_reason == "failing disk, ticket 4711"
    finally:
        await executor.close()
        await lab.close()
