"""The kolla plan against the lab's kolla (a deploy host with kolla-ansible's CLI and rules):
the documented procedure upgrades the whole cloud, and each way the old recipe went wrong fails
the rehearsal where production would have gone wrong, most of them quietly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from rollgate.core import events as ev
from rollgate.core.engine import Engine, EngineOptions
from rollgate.core.engine.client import EngineClient
from rollgate.core.inventory import Inventory, load_inventory, parse_inventory
from rollgate.core.lab import Lab
from rollgate.core.lab.commands import run_command
from rollgate.core.lab.inprocess import LabExecutor
from rollgate.core.lab.world import World
from rollgate.core.plan import build_plan
from rollgate.core.preflight import preflight
from rollgate.core.recipes import load_recipe
from rollgate.core.window import Window
from tests.engine.conftest import Harness, abort_at_failure, drive

KOLLA = Path(__file__).parents[1] / "engine" / "kolla.yaml"
VENV = "/opt/kolla-ansible/2026.1/bin"
OLD_VENV = "/opt/kolla-ansible/2025.2/bin"
INV = "-i /etc/kolla/multinode"


async def _run(
    recipe: dict[str, Any] | None = None,
    *,
    window: Window | None = None,
    decide: Any = abort_at_failure,
    world_edit: Any = None,
) -> tuple[str, Engine, World]:
    inventory = load_inventory(KOLLA)
    overrides = recipe or {}
    plan = build_plan(
        inventory,
        load_recipe("kolla").with_overrides(
            overrides.get("variables", {}), overrides.get("actions", {})
        ),
    )
    lab = await Lab.start(inventory, time_scale=0, serve=False)
    if world_edit is not None:
        world_edit(lab.world)
    engine = Engine(
        plan,
        inventory,
        lab.executor(),
        EngineOptions("tester", "t", auto_approve=True, flush_interval=0.01, window=window),
    )
    h = Harness(inventory, plan, lab, engine, EngineClient(engine, {}))
    outcome = await drive(h, decide, timeout=60)
    return outcome, engine, lab.world


def _failed(engine: Engine) -> list[ev.StepFinished]:
    return [e for e in engine.history if isinstance(e, ev.StepFinished) and e.outcome == "failed"]


async def test_the_documented_procedure_upgrades_every_container_of_the_lab() -> None:
    outcome, engine, world = await _run()
    assert outcome == "complete", [f"{e.step}: {e.error}" for e in _failed(engine)]
    assert world.all_upgraded()  # every role's image on 2026.1
    computes = [n for n in world.nodes.values() if "nova-compute" in n.roles]
    assert computes and all(n.kolla.get("openvswitch") == "2026.1" for n in computes)
    assert all(n.units["nova-compute"].code.id == "2026.1" for n in computes)
    assert world.database(computes[0], "nova").online_pending == 0
    deploy = world.nodes["one-deploy"]
    assert deploy.files[f"{VENV}/kolla-ansible"].startswith("22.")
    assert 'openstack_release: "2026.1"' in deploy.files["/etc/kolla/globals.yml"]
    assert any(p.endswith(".tar.gz") for p in deploy.files)  # /etc/kolla backed up
    backups = [p for n in world.nodes.values() for p in n.files if "mariadb_backup" in p]
    assert len(backups) == 2  # one per site, before its first service
    # the journal says where each is, since it stays on the database host
    taken = [e for e in engine.history if isinstance(e, ev.BackupTaken)]
    assert len(taken) == 2 and all(e.file == "" and e.source == "2025.2" for e in taken)
    assert all(e.where.startswith("the mariadb_backup volume on the database host") for e in taken)
    # heat and octavia have no Rollgate role: kolla-ansible moved them after the others, and
    # the final verification read every container of every node at the target
    controls = [n for n in world.nodes.values() if "nova-api" in n.roles]
    assert all(n.kolla.get("heat") == n.kolla.get("octavia") == "2026.1" for n in controls)
    read = [e for e in engine.history if isinstance(e, ev.StepFinished)
            and e.step.endswith("containers-at-target")]  # fmt: skip
    assert len(read) == len([n for n in world.nodes.values() if set(n.roles) - {"deployment"}])
    assert all(e.outcome == "ok" for e in read)


async def test_a_service_left_on_the_source_images_is_a_deviation_naming_it() -> None:
    """globals.yml enables designate, which the inventory does not list (and a preparation
    that does not compare): kolla-ansible never moves it, and the final verification says so
    for each control host."""
    outcome, engine, _ = await _run(
        {"actions": {"settings-check": None}}, world_edit=_globals_say('enable_designate: "yes"')
    )
    assert outcome == "complete with deviations"
    found = {e.step.split("/")[3]: e.error for e in engine.history
             if isinstance(e, ev.StepFinished) and e.outcome == "deviation"}  # fmt: skip
    assert set(found) == {"key1", "key2", "one-ctl1", "one-ctl2"}  # kolla's control hosts
    said = "2 line(s) say otherwise: designate_api quay.io/openstack.kolla/designate-api:2025.2"
    assert said in found["one-ctl1"]


async def _lab() -> tuple[Inventory, World]:
    inventory = load_inventory(KOLLA)
    lab = await Lab.start(inventory, time_scale=0, serve=False)
    return inventory, lab.world


async def _sh(world: World, node: str, command: str) -> tuple[int, str]:
    lines: list[str] = []
    node_ = world.nodes[node]
    status = await run_command(world, node_, command, lambda s, line: lines.append(line))
    return status, "\n".join(lines)


async def _prepared(world: World) -> None:
    """One site's deploy host as the plan's preparation leaves it."""
    for command in (
        f"python3 -m venv /opt/kolla-ansible/2026.1 && {VENV}/pip install 'kolla-ansible>=22,<23'",
        f"{VENV}/kolla-ansible install-deps",
        "cp /etc/kolla/passwords.yml /tmp/old && "
        "cp /opt/kolla-ansible/2026.1/share/kolla-ansible/etc_examples/kolla/passwords.yml "
        f"/tmp/new && {VENV}/kolla-genpwd -p /tmp/new && {VENV}/kolla-mergepwd --old /tmp/old "
        "--new /tmp/new --final /etc/kolla/passwords.yml",
        "sed -i -E 's/^#? *openstack_release:.*/openstack_release: \"2026.1\"/' "
        "/etc/kolla/globals.yml",
    ):
        status, out = await _sh(world, "one-deploy", command)
        assert status == 0, out


async def test_the_pre_19_command_line_is_not_a_kolla_ansible_command() -> None:
    _, world = await _lab()
    await _prepared(world)
    for old in (f"{INV} upgrade --tags keystone --limit key1", f"{INV} mariadb_backup --full"):
        status, out = await _sh(world, "one-deploy", f"{VENV}/kolla-ansible {old}")
        assert status == 2
        assert f"kolla-ansible: '{old}' is not a kolla-ansible command" in out


async def test_a_per_host_limit_on_a_control_plane_tag_fails_the_rehearsal() -> None:
    _, world = await _lab()
    await _prepared(world)
    status, out = await _sh(
        world, "one-deploy", f"{VENV}/kolla-ansible upgrade {INV} --tags glance --limit one-ctl1"
    )
    assert status == 2
    assert "lab rule (kolla-ansible docs: --limit is not recommended" in out
    assert "runs glance on one-ctl1 but not on one-ctl2" in out
    assert world.nodes["one-ctl2"].packages["glance-api"].id == "2025.2"  # nothing moved


async def test_computes_moved_without_their_network_fail_the_rehearsal() -> None:
    _, world = await _lab()
    await _prepared(world)
    status, out = await _sh(
        world,
        "one-deploy",
        f"{VENV}/kolla-ansible upgrade {INV} --tags openvswitch,nova,neutron "
        "--limit all:!compute --skip-tags nova-online-data-migrations",
    )
    assert status == 0, out
    status, out = await _sh(
        world, "one-deploy", f"{VENV}/kolla-ansible upgrade {INV} --tags nova --limit one-cmp1"
    )
    assert status == 2
    assert "nova moves on one-cmp1 without openvswitch and neutron" in out
    status, out = await _sh(
        world,
        "one-deploy",
        f"{VENV}/kolla-ansible upgrade {INV} --tags openvswitch,nova,neutron --limit one-cmp1",
    )
    assert status == 0, out
    node = world.nodes["one-cmp1"]
    assert node.packages["neutron-openvswitch-agent"].id == "2026.1"
    assert node.kolla["openvswitch"] == "2026.1"


async def test_nova_online_migrations_before_the_computes_fail_the_rehearsal() -> None:
    _, world = await _lab()
    await _prepared(world)
    status, out = await _sh(
        world,
        "one-deploy",
        f"{VENV}/kolla-ansible upgrade {INV} --tags openvswitch,nova,neutron --limit all:!compute",
    )
    assert status == 2
    assert "online data migrations 'should be done once all hosts in the cell" in out


async def test_the_old_kolla_ansible_redeploys_the_old_release_and_the_checks_say_so() -> None:
    """E2: with kolla-ansible 21 left in place (no install, globals untouched), `upgrade`
    exits 0 having redeployed 2025.2; the container checks, not the exit status, fail it."""
    old = f"{OLD_VENV}/kolla-ansible upgrade -i {{{{kolla_inventory}}}} --tags {{{{kolla_tags}}}}"
    outcome, engine, world = await _run(
        {
            "actions": {
                "install-kolla": None,
                "kolla-version": None,
                "install-deps": None,
                "merge-passwords": None,
                "set-release": None,
                "pull": None,
                "prechecks": None,
                "db-backup": None,
                "upgrade-service": old,
            }
        }
    )
    assert outcome == "aborted"
    upgrade = [e for e in engine.history if isinstance(e, ev.StepFinished)
               and e.step.endswith("keystone.upgrade-service")]  # fmt: skip
    assert upgrade and upgrade[0].outcome == "ok"  # kolla-ansible said nothing was wrong
    failed = _failed(engine)
    assert {f.step.split("/")[3] for f in failed} == {"key1", "key2"}
    assert all(f.step.endswith("container-check:keystone") for f in failed)
    assert all("keystone:2025.2-ubuntu-noble" in (f.error or "") for f in failed)
    assert world.nodes["key1"].packages["keystone"].id == "2025.2"


async def test_passwords_not_merged_fail_before_anything_moves() -> None:
    outcome, engine, world = await _run({"actions": {"merge-passwords": None}})
    assert outcome == "aborted"
    failed = _failed(engine)
    assert failed and all(f.step.endswith("kolla.pull") for f in failed)  # the first play
    output = [
        line
        for e in engine.history
        if isinstance(e, ev.StepOutput) and e.step == failed[0].step
        for line in e.lines
    ]
    assert any("gazpacho_lab_password' is undefined" in line for line in output)
    assert world.nodes["key1"].packages["keystone"].id == "2025.2"


async def test_a_backup_that_would_back_nothing_up_stops_the_run() -> None:
    def mariabackup_off(world: World) -> None:
        for name in ("hub-deploy", "one-deploy"):
            files = world.nodes[name].files
            files["/etc/kolla/globals.yml"] = files["/etc/kolla/globals.yml"].replace(
                'enable_mariabackup: "yes"', 'enable_mariabackup: "no"'
            )

    outcome, engine, world = await _run(world_edit=mariabackup_off)
    assert outcome == "aborted"
    (failed,) = _failed(engine)
    assert failed.step.endswith("mariadb.db-backup")
    assert "enable_mariabackup is not on" in (failed.error or "")
    assert not [p for n in world.nodes.values() for p in n.files if "mariadb_backup" in p]


async def test_the_preparation_runs_before_the_window_and_the_upgrade_waits_for_it() -> None:
    now = time.time()
    asked: list[ev.GateOpened] = []

    def decide(gate: ev.GateOpened) -> ev.Command | None:
        if gate.kind == "window":
            asked.append(gate)
            return ev.Command("reject", "tester", "not yet", gate.gate)
        return None

    outcome, engine, world = await _run(
        window=Window(now + 3600, now + 7200, relative=False), decide=decide
    )
    assert len(asked) == 1
    assert "start the upgrade (the preparation before it is done) outside it?" in asked[0].title
    done = {e.step for e in engine.history if isinstance(e, ev.StepFinished) and e.outcome == "ok"}
    prepare = [s.id for p in engine.plan.phases if p.tier == "prepare" for s in p.steps]
    assert prepare and set(prepare) <= done  # both sites' deploy hosts
    before = ("scope", "prepare")  # reading the cloud, and the preparation: before the window
    assert not any(
        s.id in done for p in engine.plan.phases if p.tier not in before for s in p.steps
    )
    assert world.nodes["one-deploy"].files[f"{VENV}/kolla-ansible"].startswith("22.")
    assert world.nodes["key1"].packages["keystone"].id == "2025.2"
    assert outcome != "complete"


async def test_check_reads_the_deploy_hosts_and_says_what_the_preparation_will_do() -> None:
    inventory, world = await _lab()

    findings = await preflight(LabExecutor(world), inventory)
    by = {(f.target, f.check): f for f in findings}
    assert by[("one-deploy", "kolla-ansible")].ok
    assert "installs it (kolla-ansible>=22,<23)" in by[("one-deploy", "kolla-ansible")].detail
    assert by[("one-deploy", "kolla inventory")].ok
    assert by[("one-deploy", "database backup")].ok
    images = by[("one-cmp1", "images")]
    assert not images.ok and not images.blocking and "kolla-ansible pull" in images.detail
    assert not [f for f in findings if not f.ok and f.blocking]
    # a host kolla's inventory lacks, and mariabackup off: both block, naming the fix
    files = world.nodes["one-deploy"].files
    files["/etc/kolla/multinode"] = files["/etc/kolla/multinode"].replace(
        "one-cmp5 ansible_host=127.45.1.15\n", ""
    )
    files["/etc/kolla/globals.yml"] = files["/etc/kolla/globals.yml"].replace(
        'enable_mariabackup: "yes"\n', ""
    )
    findings = await preflight(LabExecutor(world), inventory)
    by = {(f.target, f.check): f for f in findings}
    assert not by[("one-deploy", "kolla inventory")].ok
    assert "Rollgate's site one has one-cmp5, which /etc/kolla/multinode does not" in (
        by[("one-deploy", "kolla inventory")].detail
    )
    assert not by[("one-deploy", "database backup")].ok
    assert "kolla-ansible reconfigure" in by[("one-deploy", "database backup")].detail


async def test_a_monitoring_host_of_kollas_inventory_is_known_when_declared() -> None:
    """kolla's inventory holds a host with no service Rollgate upgrades: check blocks until
    the site declares it unmanaged (as `rollgate import kolla` writes it)."""
    from rollgate.core.methods.kolla.preflight import check_node

    inventory, world = await _lab()
    files = world.nodes["one-deploy"].files
    files["/etc/kolla/multinode"] += "[monitoring]\nmon01 ansible_host=127.45.1.99\n"
    deploy = inventory.node("one-deploy")

    async def match(inv: Inventory) -> Any:
        found = await check_node(LabExecutor(world), inv, deploy)
        return next(f for f in found if f.check == "kolla inventory")

    assert "/etc/kolla/multinode has mon01, which Rollgate's site one does not" in (
        (await match(inventory)).detail
    )
    text = KOLLA.read_text().replace(
        "  one:\n", "  one:\n    unmanaged: [{host: mon01, reason: prometheus only}]\n", 1
    )
    assert (await match(parse_inventory(text, "kolla.yaml"))).ok


@pytest.mark.parametrize("plugin", ["ovn"])
async def test_ovn_moves_ovn_controller_with_each_compute(plugin: str) -> None:
    def use_ovn(world: World) -> None:
        for name in ("hub-deploy", "one-deploy"):
            files = world.nodes[name].files
            files["/etc/kolla/globals.yml"] = files["/etc/kolla/globals.yml"].replace(
                'neutron_plugin_agent: "openvswitch"', f'neutron_plugin_agent: "{plugin}"'
            )

    outcome, engine, world = await _run(
        {"variables": {"neutron_plugin_agent": plugin}}, world_edit=use_ovn
    )
    assert outcome == "complete", [f"{e.step}: {e.error}" for e in _failed(engine)]
    computes = [n for n in world.nodes.values() if "nova-compute" in n.roles]
    assert all(n.kolla.get("ovn-controller") == "2026.1" for n in computes)
    checked = {e.step.rsplit(":", 1)[-1] for e in engine.history if isinstance(e, ev.StepFinished)
               and "container-check" in e.step and "one-cmp" in e.step}  # fmt: skip
    assert "ovn_controller" in checked and "openvswitch_vswitchd" not in checked


def _globals_say(line: str) -> Any:
    def edit(world: World) -> None:
        for node in world.nodes.values():
            if "deployment" in node.roles:
                node.files["/etc/kolla/globals.yml"] += line + "\n"

    return edit


async def test_without_container_healthchecks_the_checks_read_state_and_image() -> None:
    """enable_container_healthchecks: "no" leaves containers without .State.Health: the
    plan's healthy check fails on every container (the world's rule); the plan built with
    container_healthchecks: "no" compares running state and image only, and completes."""
    off = _globals_say('enable_container_healthchecks: "no"')
    # the preparation's own comparison would stop it first: without it, the world's rule
    outcome, engine, _ = await _run({"actions": {"settings-check": None}}, world_edit=off)
    assert outcome == "aborted"
    failed = _failed(engine)[0]
    assert ".container-check:" in failed.step and "not running healthy" in failed.error
    outcome, engine, world = await _run(
        {"variables": {"container_healthchecks": "no"}}, world_edit=off
    )
    assert outcome == "complete", [f"{e.step}: {e.error}" for e in _failed(engine)]
    assert world.all_upgraded()


async def test_check_compares_the_plans_kolla_settings_with_globals_yml() -> None:
    from rollgate.core.methods.kolla.preflight import check_node

    inventory, world = await _lab()
    _globals_say('neutron_plugin_agent: "ovn"\nkolla_container_engine: podman')(world)
    from rollgate.core.lab.inprocess import LabExecutor

    deploy = next(n for n in inventory.nodes if n.has("deployment"))
    found = await check_node(LabExecutor(world), inventory, deploy)
    [settings] = [f for f in found if f.check == "kolla settings"]
    assert not settings.ok and settings.blocking
    assert "neutron_plugin_agent is ovn there, the plan has openvswitch" in settings.detail
    assert "kolla_container_engine is podman there, the plan has docker" in settings.detail
    _globals_say('enable_designate: "yes"\nenable_mariabackup: "no"')(world)
    [settings] = [f for f in await check_node(LabExecutor(world), inventory, deploy)
                  if f.check == "kolla settings"]  # fmt: skip
    assert "it enables designate, which the inventory does not list" in settings.detail


async def test_the_preparation_stops_when_globals_yml_and_the_plan_differ() -> None:
    """A plan built for openvswitch on a cloud whose globals.yml says ovn stops in the
    preparation, before the window, naming the setting (not at a container check later)."""
    outcome, engine, _ = await _run(world_edit=_globals_say('neutron_plugin_agent: "ovn"'))
    assert outcome == "aborted"
    failed = _failed(engine)[0]
    assert failed.step.endswith("kolla.settings-check") and "/prepare/" in failed.step
    said = [line for e in engine.history if isinstance(e, ev.StepOutput)
            and e.step == failed.step for line in e.lines]  # fmt: skip
    assert "neutron_plugin_agent is ovn in /etc/kolla/globals.yml, the plan has openvswitch" in said
