"""Properties every plan must have, over generated valid inventories (hypothesis)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollgate.core.inventory import parse_inventory
from rollgate.core.plan import Plan, build_plan
from rollgate.core.roles import AGENT_ORDER, ROLES, TIERS

CONTROL_ROLES = [
    "glance-api",
    "placement-api",
    "nova-conductor",
    "nova-scheduler",
    "nova-api",
    "neutron-server",
    "cinder-scheduler",
    "cinder-volume",
    "cinder-backup",
    "cinder-api",
]


@st.composite
def inventories(draw: st.DrawFn) -> dict[str, Any]:
    n_sites = draw(st.integers(1, 3))
    shared_dashboard = draw(st.booleans())
    keystones = draw(st.integers(1, 3))
    sites: dict[str, Any] = {
        "hub": {
            "nodes": [
                {
                    "name": f"key[1:{keystones}]",
                    "address": f"10.9.0.[1:{keystones}]",
                    "roles": ["keystone"],
                }
            ]
        }
    }
    if shared_dashboard:
        sites["hub"]["nodes"].append(
            {"name": "dash1", "address": "10.9.0.50", "roles": ["horizon"]}
        )
    for s in range(n_sites):
        name = f"site{s}"
        controllers = []
        n_ctl = draw(st.integers(1, 3))
        for c in range(n_ctl):
            roles = draw(
                st.lists(st.sampled_from(CONTROL_ROLES), min_size=1, max_size=6, unique=True)
            )
            if c == 0:
                roles = sorted({*roles, "nova-conductor"})
            if not shared_dashboard and draw(st.booleans()):
                roles.append("horizon")
            if draw(st.booleans()):
                roles.append("neutron-l3-agent")
            controllers.append(
                {"name": f"{name}-ctl{c + 1}", "address": f"10.{s}.0.{c + 1}", "roles": roles}
            )
        n_cmp = draw(st.integers(0, 25))
        nodes = controllers
        if n_cmp:
            nodes.append(
                {
                    "name": f"{name}-cmp[001:{n_cmp:03d}]",
                    "address": f"10.{s}.1.[1:{n_cmp}]",
                    "roles": ["nova-compute", "neutron-l2-agent"],
                }
            )
        if draw(st.booleans()):
            nodes.append(
                {
                    "name": f"{name}-net1",
                    "address": f"10.{s}.2.1",
                    "roles": ["neutron-l2-agent", "neutron-l3-agent", "neutron-dhcp-agent"],
                }
            )
        sites[name] = {"priority": draw(st.integers(0, 3)), "nodes": nodes}
    src = draw(st.sampled_from(["2024.1", "2025.1", "2025.2"]))
    dst = {
        "2024.1": "2025.1",
        "2025.1": draw(st.sampled_from(["2025.2", "2026.1"])),
        "2025.2": "2026.1",
    }[src]
    inventory: dict[str, Any] = {
        "cloud": "prop",
        "upgrade": {"from": src, "to": dst},
        "method": "apt",  # kolla: tests/foundation/test_kolla_plan.py
        "shared": {"identity": {"site": "hub"}},
        "sites": sites,
        "policy": {
            "gates": draw(st.lists(st.sampled_from(["phase", "canary", "step"]), unique=True)),
            "canary": draw(st.integers(0, 3)),
            "batch_size": draw(st.integers(1, 7)),
            "site_concurrency": draw(st.integers(1, 3)),
        },
    }
    if shared_dashboard:
        inventory["shared"]["dashboard"] = {"site": "hub"}
    return inventory


def plan_of(data: dict[str, Any]) -> Plan:
    return build_plan(parse_inventory(yaml.safe_dump(data, sort_keys=False), "gen.yaml"))


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(inventories())
def test_phases_follow_the_tier_order(data: dict[str, Any]) -> None:
    plan = plan_of(data)
    waves = [p.wave for p in plan.phases]
    assert waves == sorted(waves)
    # every site's services are compared with the inventory first, then keystone upgrades
    scopes = [p for p in plan.phases if p.tier == "scope"]
    assert plan.phases[: len(scopes)] == tuple(scopes)
    assert all(len(p.steps) == 1 and p.steps[0].action == "verify-scope" for p in scopes)
    first = plan.phases[len(scopes)]
    assert first.tier == "identity" and first.site == "hub"
    assert sum(p.tier == "identity" for p in plan.phases) == 1
    if "dashboard" in data["shared"]:
        assert [p.site for p in plan.phases if p.tier == "dashboard"] == ["hub"]
    for phase in plan.phases:
        assert phase.tier == TIERS[phase.wave]
        if phase.tier in ("scope", "verify"):  # the last phase reads every role back
            assert phase is plan.phases[-1] or plan.phases[-1].tier == "verify"
            continue
        assert all(ROLES[s.role].tier == phase.tier for s in phase.steps)


@SETTINGS
@given(inventories())
def test_every_step_runs_on_a_node_with_its_role(data: dict[str, Any]) -> None:
    inv = parse_inventory(yaml.safe_dump(data), "gen.yaml")
    for step in build_plan(inv).steps:
        node = inv.node(step.node)
        assert step.role in node.roles, step.id
        assert node.site == step.site


def _stage_index(phase: Any, predicate: Any) -> list[int]:
    return [i for i, st_ in enumerate(phase.stages) if predicate(st_)]


@SETTINGS
@given(inventories())
def test_compute_order_canary_and_batches(data: dict[str, Any]) -> None:
    inv = parse_inventory(yaml.safe_dump(data), "gen.yaml")
    plan = build_plan(inv)
    for phase in (p for p in plan.phases if p.tier == "compute"):

        def first_restart(role: str, phase: Any = phase) -> int | None:
            for i, stage in enumerate(phase.stages):
                if any(s.action == "restart" and s.role == role for s in stage.steps):
                    return i
            return None

        order = [
            first_restart(r)
            for r in (
                "placement-api",
                "nova-conductor",
                "nova-scheduler",
                "nova-api",
                "neutron-server",
            )
        ]
        present = [i for i in order if i is not None]
        assert present == sorted(present)
        canary = _stage_index(phase, lambda s: s.kind == "canary")
        batches = _stage_index(phase, lambda s: s.kind == "batch")
        controls = _stage_index(phase, lambda s: s.kind in ("control", "network"))
        if canary and batches:
            assert max(canary) < min(batches)
        if controls and (canary or batches):
            assert max(controls) < min(canary + batches)
        seen: list[str] = []
        for stage in phase.stages:
            if stage.kind in ("canary", "batch"):
                assert len(stage.nodes) <= max(inv.policy.batch_size, inv.policy.canary)
                seen += stage.nodes
        computes = [n.name for n in inv.site(phase.site).with_role("nova-compute")]
        assert sorted(seen) == sorted(computes)  # every compute once, none in two batches
        for stage in phase.stages:
            if stage.kind in ("canary", "batch"):
                for node in stage.nodes:
                    actions = [s.action for s in stage.steps if s.node == node]
                    assert actions[0] == "disable-compute"
                    work = [
                        i for i, a in enumerate(actions) if a in ("restart", "upgrade-packages")
                    ]
                    assert actions.index("enable-compute") > max(work)


@SETTINGS
@given(inventories())
def test_backup_and_checks_before_upgrades_contract_after(data: dict[str, Any]) -> None:
    plan = plan_of(data)
    for phase in plan.phases:
        steps = phase.steps
        for service in {s.service for s in steps}:
            mine = [(i, s) for i, s in enumerate(steps) if s.service == service]
            upgrades = [
                i
                for i, s in enumerate(steps)
                if s.action == "upgrade-packages" and service in s.args["services"]
            ]
            backups = [i for i, s in mine if s.action == "db-backup"]
            if backups and upgrades and plan.method == "apt":
                assert max(backups) < min(upgrades)
            restarts = [  # neutron's agents move after its contract, with every server moved
                i
                for i, s in mine
                if s.action in ("restart", "upgrade-packages") and s.role not in AGENT_ORDER
            ]
            late = [i for i, s in mine if s.action in ("db-contract", "online-migrations")]
            if late and restarts:
                assert min(late) > max(restarts)
        cinder = [
            s.role
            for s in steps
            if s.action == "restart" and s.service == "cinder" and "/refresh-" not in s.id
        ]
        order = ["cinder-scheduler", "cinder-volume", "cinder-backup", "cinder-api"]
        ranks = [order.index(r) for r in cinder]
        assert ranks == sorted(ranks)


@SETTINGS
@given(inventories(), st.randoms(use_true_random=False))
def test_digest_is_stable_across_runs_and_key_order(
    data: dict[str, Any], rng: random.Random
) -> None:
    first = plan_of(data)
    again = plan_of(data)
    reordered = plan_of(shuffled(data, rng))
    assert first.digest == again.digest == reordered.digest
    assert Plan.from_dict(first.to_dict()).to_dict() == first.to_dict()


@SETTINGS
@given(inventories())
def test_gates_sit_where_the_policy_asks(data: dict[str, Any]) -> None:
    plan = plan_of(data)
    gates = data["policy"]["gates"]
    # the scope check and the final verification run with no gate: they change nothing
    assert all(
        (p.gate is not None) == ("phase" in gates and p.tier not in ("scope", "verify"))
        for p in plan.phases
    )
    assert all((s.gate is not None) == ("step" in gates) for s in plan.steps)
    canary_gates = [  # a skip-level downtime gate is always there (its own property)
        st_ for p in plan.phases for st_ in p.stages if st_.gate and st_.gate.kind != "downtime"
    ]
    if "canary" not in gates:
        assert canary_gates == []
    for stage in canary_gates:
        assert stage.kind == "batch" and stage.id.endswith("batch-1")


@SETTINGS
@given(inventories())
def test_apt_nodes_point_at_the_target_first_and_every_install_is_verified(
    data: dict[str, Any],
) -> None:
    """Before any package of a node moves, its source points at the target and its lists are
    refreshed, once; right after each install every package is checked against the target;
    installs never prompt (DEBIAN_FRONTEND on the command line, old conffiles kept)."""
    plan = plan_of(data)
    if plan.method != "apt":
        return
    steps = plan.steps
    for node in {s.node for s in steps}:
        mine = [s for s in steps if s.node == node]
        installs = [i for i, s in enumerate(mine) if s.action == "upgrade-packages"]
        sources = [i for i, s in enumerate(mine) if s.action in ("package-source", "apt-update")]
        if not installs:
            continue
        assert len(sources) == 1 and sources[0] < installs[0]
        source = mine[sources[0]]
        assert source.command in (
            f"add-apt-repository -y cloud-archive:{_codename_of(plan.target)} && apt-get update",
            "apt-get update",
        )
        for i in installs:
            install = mine[i]
            assert install.command is not None
            assert (
                "&& env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get"
                in install.command
            )
            # in its phase: restarts blocked before the install, allowed after the last restart
            phase = [s for s in mine if s.id.split("/")[:2] == install.id.split("/")[:2]]
            at = phase.index(install)
            actions = [s.action for s in phase]
            # the install blocks restarts itself (a site's own policy-rc.d kept aside first),
            # before apt-get runs
            blocks = "\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d"
            assert blocks in install.command
            assert install.command.index(blocks) < install.command.index("apt-get install")
            assert install.command.startswith("test ! -e /usr/sbin/policy-rc.d || ")
            restarts = [  # its own restarts, not the phase's final ones (the RPC pin)
                j
                for j, (a, st) in enumerate(zip(actions, phase, strict=True))
                if a == "restart" and "/refresh-" not in st.id
            ]
            assert "allow-restarts" in actions[max([at, *restarts]) :]
            assert "--force-confold" in install.command and "--force-confdef" in install.command
            versioned = [  # horizon releases on its own: no release to compare with
                p for p in install.args["packages"] if p != "openstack-dashboard"
            ]
            if not versioned:
                continue
            assert mine[i + 1].action == "verify-version"  # right after the install
            checked = mine[i + 1 : i + 1 + len(versioned)]
            assert [s.action for s in checked] == ["verify-version"] * len(versioned)
            assert {s.args["expect"] for s in checked} == {plan.target}


def _codename_of(release_id: str) -> str:
    from rollgate.core.releases import find_release

    return find_release(release_id).name


def test_the_package_source_names_the_target_pocket() -> None:
    from rollgate.core.inventory import load_inventory

    plan = build_plan(load_inventory("sample_inventory/lab-two-sites.yaml"))
    sources = {s.command for s in plan.steps if s.action == "package-source"}
    assert sources == {"add-apt-repository -y cloud-archive:gazpacho && apt-get update"}


SCHEMA_ACTIONS = ("db-sync", "api-db-sync", "db-expand", "db-check", "db-migrate")


@SETTINGS
@given(inventories())
def test_the_target_checks_itself_before_its_schema_and_any_restart(data: dict[str, Any]) -> None:
    """Each service's `*-status upgrade check` that decides whether to go on runs on a node
    that already has the target's code (after its install and version check, restarts
    blocked), before the schema moves and before any of the service's units restart; the
    previous release's online migrations finish before the service's first install."""
    plan = plan_of(data)
    if plan.method != "apt":
        return
    for phase in plan.phases:
        steps = phase.steps
        for service in {s.service for s in steps} - {"horizon"}:
            mine = [(i, s) for i, s in enumerate(steps) if s.service == service]
            checks = [(i, s) for i, s in mine if s.action == "status-check"]
            if not checks:
                continue
            at, check = checks[0]
            installed = [
                i
                for i, s in enumerate(steps[:at])
                if s.node == check.node
                and s.action == "verify-version"
                and s.args.get("service") == service
            ]
            assert installed, f"{check.id} runs before the target's code is on {check.node}"
            schema = [i for i, s in mine if s.action in SCHEMA_ACTIONS]
            restarts = [
                i
                for i, s in mine
                if s.action in ("restart", "stop")
                and "-jump/" not in s.id
                and "-offline/" not in s.id
            ]
            assert all(at < i for i in schema + restarts), check.id
            previous = [i for i, s in mine if s.action == "previous-migrations"]
            first_install = min(
                i
                for i, s in enumerate(steps)
                if s.action == "upgrade-packages" and service in s.args["services"]
            )
            assert all(i < first_install for i in previous)


@SETTINGS
@given(inventories())
def test_nova_runs_pinned_while_mixed_and_restarts_everything_once_all_moved(
    data: dict[str, Any],
) -> None:
    """[upgrade_levels] compute=auto is checked on every nova node before its first nova
    restart (controllers before any nova restart at the site); after every compute's own
    restart, every nova unit restarts once more (dropping the pin), before the online
    migrations and the final status check."""
    plan = plan_of(data)
    if plan.method != "apt":
        return
    for phase in (p for p in plan.phases if p.tier == "compute"):
        steps = phase.steps
        nova = [(i, s) for i, s in enumerate(steps) if s.service == "nova"]
        if not nova:
            continue
        first_restart = {}
        for i, s in nova:
            if s.action == "restart" and "/refresh-" not in s.id:
                first_restart.setdefault(s.node, i)
        pins = {s.node: i for i, s in nova if s.action == "rpc-pin"}
        for node, at in first_restart.items():
            assert node in pins and pins[node] < at, node
        controllers = [i for i, s in nova if s.action == "rpc-pin" and s.role != "nova-compute"]
        if first_restart:
            assert all(i < min(first_restart.values()) for i in controllers)
        refresh = [i for i, s in nova if "/refresh-" in s.id]
        own = [i for i, s in nova if s.action == "restart" and "/refresh-" not in s.id]
        if refresh:
            assert max(own) < min(refresh)
            nodes = {s.node for _, s in nova if s.action == "restart"}
            assert nodes == {steps[i].node for i in refresh}
            late = [i for i, s in nova if s.action in ("online-migrations", "status-check")]
            assert max(refresh) < max(late)


@SETTINGS
@given(inventories())
def test_neutron_servers_move_first_and_contract_only_when_every_server_stops(
    data: dict[str, Any],
) -> None:
    """Every neutron-server runs the new code before `has_offline_migrations`; the stop,
    contract and start that follow run only when it warns (pending migrations), with every
    server stopped before the contract; agents restart after all that; each restarted agent
    host is seen alive through the API."""
    plan = plan_of(data)
    if plan.method != "apt":
        return
    for phase in (p for p in plan.phases if p.tier == "compute"):
        steps = phase.steps
        servers = [i for i, s in enumerate(steps) if s.role == "neutron-server"]
        if not servers:
            continue
        check = next(i for i, s in enumerate(steps) if s.action == "offline-migrations")
        server_restarts = [i for i in servers if steps[i].action == "restart" and i < check]
        server_nodes = {steps[i].node for i in servers}
        assert {steps[i].node for i in server_restarts} == server_nodes
        conditional = [i for i, s in enumerate(steps) if "when" in s.args]
        assert {steps[i].action for i in conditional} == {
            "stop",
            "db-contract",
            "schema-version",
            "start",
            "running-version",
            "wait-api-up",
        }
        assert all(steps[i].args["when"]["step"] == steps[check].id for i in conditional)
        contract = next(i for i in conditional if steps[i].action == "db-contract")
        stops = [i for i in conditional if steps[i].action == "stop"]
        assert {steps[i].node for i in stops} == server_nodes and max(stops) < contract
        agents = [i for i, s in enumerate(steps) if s.action == "restart" and s.role in AGENT_ORDER]
        assert all(i > max(conditional) for i in agents)
        for i in agents:
            node = steps[i].node
            assert any(s.action == "wait-agents-up" and s.node == node for s in steps[i + 1 :]), (
                node
            )


@SETTINGS
@given(inventories())
def test_a_skip_level_jump_stops_what_cannot_run_two_releases_apart(data: dict[str, Any]) -> None:
    """In a SLURP jump every unit of keystone, glance, placement, neutron and cinder at the
    site is stopped, behind a downtime gate, before the service's first install; nova rolls
    (N and N-2 together are supported); an N+1 upgrade stops nothing."""
    plan = plan_of(data)
    if plan.method != "apt":
        return
    computes = _computes(data) if plan.skip_level else set()
    for phase in plan.phases:
        steps = phase.steps
        jumps = [st for st in phase.stages if st.id.endswith("-jump")]
        if not plan.skip_level:
            assert not jumps
            continue
        assert all(st.gate is not None and st.gate.kind == "downtime" for st in jumps)
        for stage in jumps:
            service = stage.steps[0].service
            assert service != "nova"
            at = steps.index(stage.steps[0])
            installs = [
                i
                for i, s in enumerate(steps)
                if s.action == "upgrade-packages" and service in s.args["services"]
            ]
            assert all(at < i for i in installs)
            stopped = {(s.node, s.command) for s in stage.steps}
            for s in steps:
                if s.service == service and s.action == "restart" and "/refresh-" not in s.id:
                    if service == "neutron" and s.node in computes:
                        # the computes' agents keep running until their own batch (neutron's
                        # skip-level multinode jobs run them two releases behind the servers)
                        assert (s.node, s.command.replace("restart", "stop")) not in stopped
                        continue
                    assert (s.node, s.command.replace("restart", "stop")) in stopped, s.id
        moved = {s.service for s in steps if s.action == "upgrade-packages"} - {"nova", "horizon"}
        stopped_services = {st.steps[0].service for st in jumps}
        assert moved <= stopped_services | {"nova"}, (moved, stopped_services)
    if plan.skip_level:
        _jump_gates_name_every_service_their_stop_takes_down(data, plan)


def _computes(data: dict[str, Any]) -> set[str]:
    inventory = parse_inventory(yaml.safe_dump(data, sort_keys=False), "gen.yaml")
    return {n.name for n in inventory.nodes if n.has("nova-compute")}


def _jump_gates_name_every_service_their_stop_takes_down(data: dict[str, Any], plan: Plan) -> None:
    """A stop of apache2 for placement also stops cinder-api and horizon on the same node:
    the downtime gate names each such service and its nodes (audit N5)."""
    from rollgate.core.methods import method
    from rollgate.core.roles import ROLES

    inventory = parse_inventory(yaml.safe_dump(data, sort_keys=False), "gen.yaml")
    mapping = method(inventory.method)
    nodes = {n.name: n for n in inventory.nodes}
    for phase in plan.phases:
        for stage in (j for j in phase.stages if j.id.endswith("-jump")):
            assert stage.gate is not None
            service = stage.steps[0].service
            for step in stage.steps:
                unit = step.args.get("unit") or mapping.unit(step.role)
                for other in nodes[step.node].roles:
                    spec = ROLES.get(other)
                    if spec is None or spec.service == service or mapping.unit(other) != unit:
                        continue
                    assert f"also stops {spec.service} on " in stage.gate.title, (
                        step.node, other, stage.gate.title,
                    )  # fmt: skip


@pytest.mark.parametrize(
    "path",
    sorted(str(p) for p in (Path(__file__).parents[2] / "sample_inventory").glob("*.yaml")),
)
def test_the_digest_fed_a_phase_at_a_time_is_the_whole_plans(path: str) -> None:
    """plan_digest hashes the plan a phase at a time (no copy of the whole plan in memory):
    its bytes are those of the whole dict, so every digest journals hold stays the same."""
    import hashlib

    import orjson

    from rollgate.core.inventory import load_inventory

    plan = build_plan(load_inventory(path))
    data = plan.to_dict()
    data.pop("digest")
    whole = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert plan.digest == whole
