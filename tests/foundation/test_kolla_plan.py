"""Properties of every kolla plan (hypothesis over generated inventories): kolla-ansible's own
procedure and command line, gates and batches only through what kolla supports."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from rollgate.core.inventory import InventoryError, parse_inventory
from rollgate.core.plan import Plan, Step, build_plan
from rollgate.core.releases import CATALOGUE, find_release
from tests.foundation.test_plan_properties import SETTINGS, inventories

ACTIONS = {"install-deps", "pull", "prechecks", "mariadb-backup", "upgrade", "--version"}
PREPARE = [
    "config-backup", "install-kolla", "kolla-version", "install-deps", "merge-passwords",
    "settings-check", "set-release", "pull", "prechecks",
]  # fmt: skip


@st.composite
def kolla_inventories(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(inventories())
    data["method"] = "kolla"
    # one release at a time: the kolla method refuses a SLURP jump (its own test below)
    source = find_release(data["upgrade"]["from"])
    data["upgrade"]["to"] = CATALOGUE[source.index + 1].id
    for i, site in enumerate(data["sites"].values()):
        site["nodes"].append(
            {"name": f"deploy{i}", "address": f"10.200.0.{i + 1}", "roles": ["deployment"]}
        )
    if draw(st.booleans()):
        data["recipe"] = {"variables": {"neutron_plugin_agent": "ovn", "db_backup": "no"}}
    return data


def plan_of(data: dict[str, Any]) -> tuple[Any, Plan]:
    inv = parse_inventory(yaml.safe_dump(data, sort_keys=False), "gen.yaml")
    return inv, build_plan(inv)


def kolla_argv(step: Step) -> list[list[str]]:
    return [
        shlex.split(part)
        for part in (step.command or "").split("&&")
        if shlex.split(part) and shlex.split(part)[0].endswith("/bin/kolla-ansible")
    ]


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


@SETTINGS
@given(kolla_inventories())
def test_each_site_prepares_first_in_kollas_order(data: dict[str, Any]) -> None:
    inv, plan = plan_of(data)
    prepares = [p for p in plan.phases if p.tier == "prepare"]
    scopes = [p for p in plan.phases if p.tier == "scope"]  # reading only, before anything
    assert sorted(p.site for p in prepares) == sorted(s.name for s in inv.sites)
    assert plan.phases[: len(scopes)] == tuple(scopes)
    assert all(p.wave == scopes[0].wave + 1 for p in prepares) if scopes else True
    assert plan.phases[len(scopes) : len(scopes) + len(prepares)] == tuple(prepares)
    for phase in prepares:
        assert [s.action for s in phase.steps] == PREPARE
        assert all(s.node == f"deploy{list(data['sites']).index(phase.site)}" for s in phase.steps)


@SETTINGS
@given(kolla_inventories())
def test_every_kolla_ansible_call_has_the_action_first_and_limits_only_computes(
    data: dict[str, Any],
) -> None:
    inv, plan = plan_of(data)
    for step in plan.steps:
        for argv in kolla_argv(step):
            assert argv[1] in ACTIONS, step.command  # kolla-ansible <action> <arguments>
            limit = option(argv, "--limit")
            if limit is None:
                continue
            computes = {n.name for n in inv.site(step.site).with_role("nova-compute")}
            if limit == "all:!compute":  # the control plane: only the computes left out
                assert option(argv, "--skip-tags") == "nova-online-data-migrations"
                continue
            assert set(limit.split(",")) <= computes, step.id  # never a per-host control run


@SETTINGS
@given(kolla_inventories())
def test_each_compute_moves_once_with_its_network_then_nova_reloads_everywhere(
    data: dict[str, Any],
) -> None:
    inv, plan = plan_of(data)
    for phase in (p for p in plan.phases if p.tier == "compute"):
        batches = [s for s in phase.steps if s.action == "upgrade-computes"]
        moved = [h for s in batches for h in option(kolla_argv(s)[0], "--limit").split(",")]
        computes = [n.name for n in inv.site(phase.site).with_role("nova-compute")]
        assert sorted(moved) == sorted(computes)  # each once, none forgotten
        switch = "ovn-controller" if "recipe" in data else "openvswitch"
        for step in batches:
            tags = set(option(kolla_argv(step)[0], "--tags").split(","))
            assert tags == {switch, "nova", "neutron"}
        final = [
            s for s in phase.steps
            if s.action == "upgrade-service" and "nova-reload" in (s.command or "")
        ]  # fmt: skip
        if not computes and not any(
            n.has(r) for n in inv.site(phase.site).nodes for r in ("nova-api", "nova-conductor")
        ):
            continue
        (last,) = final
        assert option(kolla_argv(last)[0], "--limit") is None
        steps = list(phase.steps)
        assert all(steps.index(b) < steps.index(last) for b in batches)
        assert set(option(kolla_argv(last)[0], "--tags").split(",")) == {
            "nova-reload", "nova-online-data-migrations"
        }  # fmt: skip


@SETTINGS
@given(kolla_inventories())
def test_every_run_is_followed_by_container_checks_on_the_target_image(
    data: dict[str, Any],
) -> None:
    inv, plan = plan_of(data)
    target = inv.upgrade.target.id
    for phase in plan.phases:
        if phase.tier == "prepare":
            continue
        checked = {s.node for s in phase.steps if s.action == "container-check"}
        for stage in phase.stages:
            for step in stage.steps:
                if step.action == "container-check":
                    assert target.replace(".", "[.]") in step.args["expect_match"]
                    assert step.args["expect_match"].startswith("running healthy ")
        moved = {
            n.name
            for n in inv.site(phase.site).nodes
            if any(r in n.roles for r in _tier_roles(phase.tier))
        }
        assert moved <= checked, phase.id


def _tier_roles(tier: str) -> list[str]:
    from rollgate.core.roles import ROLES

    return [r for r, spec in ROLES.items() if spec.tier == tier]


@SETTINGS
@given(kolla_inventories())
def test_every_site_backs_its_databases_up_before_its_first_service_moves(
    data: dict[str, Any],
) -> None:
    inv, plan = plan_of(data)
    for site in inv.sites:
        steps = [s for s in plan.steps if s.site == site.name and s.action != "container-check"]
        work = [s for s in steps if s.action.startswith("upgrade-")]
        if not work:
            continue
        backups = [s for s in steps if s.action == "db-backup"]
        if "recipe" in data:  # db_backup: "no"
            assert not backups
            continue
        (backup,) = backups
        assert steps.index(backup) < steps.index(work[0])
        assert "enable_mariabackup" in (backup.command or "")  # it cannot back nothing up


def _inventory(nodes: str) -> str:
    return f"""
cloud: k
method: kolla
upgrade: {{from: "2025.2", to: "2026.1"}}
shared: {{identity: {{site: a}}}}
sites:
  a:
    nodes:
{nodes}
"""


def test_a_kolla_site_needs_one_deploy_host() -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(
            _inventory("      - {name: k1, address: 10.0.0.1, roles: [keystone]}"), "k.yaml"
        )
    assert "site 'a' has 0 nodes with the deployment role; the kolla method needs exactly one" in (
        str(caught.value.problems[0])
    )


def test_a_compute_on_a_nova_controller_is_refused_for_kolla() -> None:
    nodes = (
        "      - {name: d1, address: 10.0.0.9, roles: [deployment]}\n"
        "      - {name: aio, address: 10.0.0.1,\n"
        "         roles: [keystone, nova-api, nova-conductor, nova-compute]}"
    )
    with pytest.raises(InventoryError) as caught:
        parse_inventory(_inventory(nodes), "k.yaml")
    message = str(caught.value.problems[0])
    assert "aio runs nova-compute beside nova-api, nova-conductor: kolla upgrades both" in message


def test_a_skip_level_kolla_upgrade_is_refused_with_what_kolla_needs_first() -> None:
    """kolla-ansible's SLURP upgrade needs RabbitMQ stepped through its versions
    (`kolla-ansible rabbitmq-upgrade`) and the target's ansible-core: not planned, so refused
    at validation, naming the one-release-at-a-time way."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "sample_inventory" / "lab-kolla.yaml").read_text()
    slurp = text.replace("from: flamingo", 'from: "2025.1"', 1)
    with pytest.raises(InventoryError) as refused:
        parse_inventory(slurp, "slurp.yaml")
    said = str(refused.value)
    assert "does not plan a skip-level (SLURP) upgrade (2025.1 -> 2026.1)" in said
    assert "kolla-ansible rabbitmq-upgrade VERSION" in said
    assert "upgrade one release at a time (2025.1 -> 2025.2, then on)" in said


@pytest.mark.parametrize(
    ("globals_yml", "said"),
    [
        ("neutron_plugin_agent: ovn\n", ["neutron_plugin_agent is ovn in GLOBALS, the plan has "
                                         "openvswitch"]),
        ("enable_container_healthchecks: no\nkolla_container_engine: 'podman'\n",
         ["kolla_container_engine is podman in GLOBALS, the plan has docker",
          "enable_container_healthchecks is no in GLOBALS, the plan has yes"]),
        ("---\nkolla_base_distro: ubuntu\n", []),  # kolla's defaults: the plan's
        # the enabled services: kolla's defaults, then each enable_<service> (the last wins;
        # a Jinja value keeps the default; enable_mariabackup is no service)
        ("enable_cinder: 'yes'  # block storage\nenable_mariabackup: yes\n"
         'enable_heat: "{{ enable_openstack_core | bool }}"\nenable_octavia: no\n',
         ["the enabled services are cinder,glance,heat,horizon,keystone,neutron,nova,placement "
          "in GLOBALS, the plan has glance,heat,horizon,keystone,neutron,nova,placement "
          "(recipe.variables.kolla_services)"]),
        ("enable_heat: true\nenable_heat: False\n",
         ["the enabled services are glance,horizon,keystone,neutron,nova,placement in GLOBALS, "
          "the plan has glance,heat,horizon,keystone,neutron,nova,placement "
          "(recipe.variables.kolla_services)"]),
    ],
)  # fmt: skip
def test_the_settings_check_script_reads_globals_yml_as_sh_runs_it(
    tmp_path: Any, globals_yml: str, said: list[str]
) -> None:
    """The preparation's settings-check, rendered and run by the real sh against a
    globals.yml: each setting that differs is said, absent ones are kolla's defaults."""
    import subprocess

    from rollgate.core.recipes import load_recipe, render

    (tmp_path / "globals.yml").write_text(globals_yml)
    from rollgate.core.methods.kolla.mapping import SITE_ORDER

    values = {"kolla_config_dir": str(tmp_path), "neutron_plugin_agent": "openvswitch",
              "container_engine": "docker", "container_healthchecks": "yes",
              "kolla_service_list": "glance,heat,horizon,keystone,neutron,nova,placement",
              "kolla_known_services": ",".join(SITE_ORDER)}  # fmt: skip
    command = render(load_recipe("kolla").actions["settings-check"].run, values)  # type: ignore[union-attr]
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    where = str(tmp_path / "globals.yml")
    assert done.stdout.splitlines() == [line.replace("GLOBALS", where) for line in said]
    assert done.returncode == (1 if said else 0), done.stderr


def test_with_ovn_the_central_databases_move_after_every_ovn_controller() -> None:
    """OVN's order: ovn-controller on every chassis (with its compute batch), then northd and
    the NB/SB databases (kolla's ovn-db play), before nova's final pass."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "sample_inventory" / "kolla-site.yaml").read_text()
    text = text.replace("rabbitmq, memcached]", "rabbitmq, memcached, ovsdb]").replace(
        'kolla_services: "', 'neutron_plugin_agent: ovn\n    kolla_services: "'
    )
    plan = build_plan(parse_inventory(text, "ovn.yaml"))
    compute = next(p for p in plan.phases if p.tier == "compute")
    stages = [s.id.split("/")[-1] for s in compute.stages]
    assert stages.index("ovn-db") > max(i for i, s in enumerate(stages) if s.startswith("batch"))
    assert stages.index("ovn-db") < stages.index("nova-final")
    [step] = next(s for s in compute.stages if s.id.endswith("/ovn-db")).steps
    assert step.command and step.command.endswith("--tags ovn-db")
    # and the enabled services no role models move after the modelled ones, in one run
    rest = next(s for p in plan.phases for s in p.stages if s.id.endswith("/kolla-rest"))
    assert (rest.steps[0].command or "").endswith("--tags heat")
