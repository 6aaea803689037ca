"""The checks the plan puts after each move, each read from the running cloud: the code each
restarted program runs, that it answers (its API, or a heartbeat written after the restart),
each schema's revision against the target's heads, each API's newest microversion, nova's
service versions; and the last phase, which reads the whole cloud back (`verify`).

What a check expects comes from core/upstream.py (the target's own tree); where Rollgate has no
facts of the target, the step says so (a warning an operator acknowledges), never guesses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollgate.core import upstream
from rollgate.core.releases import SERVICES
from rollgate.core.roles import API_SERVICE_TYPES, HEARTBEAT_ROLES, ROLES
from rollgate.core.upstream import DEPENDENT_CONTRACT

if TYPE_CHECKING:
    from rollgate.core.inventory import Node
    from rollgate.core.plan import PhaseBuilder, Step

# the microversioned APIs: service type -> the name core/upstream.py keeps its facts under
MICROVERSION_FACTS = {"compute": "compute", "placement": "placement", "block-storage": "volume"}

# The role whose node reads each service's schema in the final verification, in order
SCHEMA_ROLES = {
    "keystone": ("keystone",),
    "glance": ("glance-api",),
    "placement": ("placement-api",),
    "nova": ("nova-conductor", "nova-api"),
    "neutron": ("neutron-server",),
    "cinder": ("cinder-api", "cinder-scheduler"),
}

# What each service's revision tool prints: keystone's db_version only the expand branch's
PRINTED_BRANCHES = {"keystone": ("expand",)}


def printed_revisions(
    database: str, heads: dict[str, str], source_heads: dict[str, str] | None
) -> list[str]:
    """The revisions the service's tool prints for a schema at `heads` (branch -> revision);
    `source_heads`: the release before, to tell whether an expand moved the expand branch."""
    if database in DEPENDENT_CONTRACT and "contract" in heads:
        moved = source_heads is None or heads["expand"] != source_heads.get("expand")
        contract_is_sources = source_heads is not None and heads["contract"] == source_heads.get(
            "contract"
        )
        if not (moved and contract_is_sources):  # the pair is one release's: one row
            return [heads["contract"]]
    printed = PRINTED_BRANCHES.get(database, tuple(heads))
    return sorted(heads[branch] for branch in printed)


def _when(when: dict[str, str] | None) -> dict[str, Any]:
    return {"when": when} if when else {}


def running_pairs(b: PhaseBuilder, node: Node, roles: list[str]) -> list[tuple[str, str, str]]:
    """(unit, package, service) of each of `roles` the node runs whose package's version names
    a release (horizon releases on its own), once each."""
    method = b.ctx.method
    out: dict[tuple[str, str], str] = {}
    for role in roles:
        spec = ROLES.get(role)
        if spec is None or spec.service not in SERVICES or not node.has(role):
            continue
        out.setdefault((method.unit(role), method.package(role)), spec.service)
    return [(unit, package, service) for (unit, package), service in out.items()]


def running_version(
    b: PhaseBuilder,
    node: Node,
    roles: list[str],
    *,
    settle: bool = False,
    deviation: bool = False,
    when: dict[str, str] | None = None,
) -> Step | None:
    """What code the node's units of `roles` run now, read from their processes (None when
    the method cannot read it, or nothing of `roles` versions by release). `settle`: asked
    only after the services' start grace (policy.start_grace)."""
    pairs = running_pairs(b, node, roles)
    if not pairs:
        return None
    args: dict[str, Any] = {
        "expect_running": [list(p) for p in pairs],
        "target": b.ctx.inventory.upgrade.target.id,
        **_when(when),
    }
    if settle:
        args["settle"] = True
    if deviation:
        args["deviation"] = True
    role = next(r for r in roles if node.has(r) and r in ROLES)
    return b.add(
        "running-version",
        node,
        role,
        args=args,
        units=list(dict.fromkeys(u for u, _, _ in pairs)),
        unit_packages=[word for unit, package, _ in pairs for word in (unit, package)],
    )


def after_restart(
    b: PhaseBuilder,
    node: Node,
    roles: list[str],
    *,
    when: dict[str, str] | None = None,
    heartbeats: bool = True,
) -> None:
    """After `roles` restarted on `node`: past the start grace, the code each runs (where the
    method cannot read it, that its unit is active), then that each answers: the site's API
    for an API role, a heartbeat written after the restart for a service with a record
    (`heartbeats` False: later, when the API that lists them runs again). Computes and
    neutron agents are seen reporting by their callers (compute_back, agents_up)."""
    if running_version(b, node, roles, settle=True, when=when) is None:
        units: dict[str, str] = {}
        for role in roles:
            units.setdefault(b.ctx.method.unit(role), role)
        for index, (unit, role) in enumerate(units.items()):
            args = {"settle": True} if index == 0 else {}
            b.add("verify-running", node, role, args={**args, **_when(when)}, unit=unit)
    for role in dict.fromkeys(r for r in roles if r in API_SERVICE_TYPES):
        wait_api_up(b, node, role, when=when)
    for role in roles:
        if heartbeats and role in HEARTBEAT_ROLES and role != "nova-compute":
            wait_service_up(b, node, role, when=when)


def wait_api_up(
    b: PhaseBuilder, node: Node, role: str, *, when: dict[str, str] | None = None
) -> Step:
    kind = API_SERVICE_TYPES[role]
    region = b.site.region
    return b.cloud(
        "wait-api-up",
        node,
        role,
        f"the {kind} API of {region} answers after {role} restarted on {node.name}",
        qualifier=kind,
        service_type=kind,
        **_when(when),
    )


def wait_service_up(
    b: PhaseBuilder, node: Node, role: str, *, when: dict[str, str] | None = None
) -> Step:
    return b.cloud(
        "wait-service-up",
        node,
        role,
        f"{role} on {node.name} reports again after its restart",
        qualifier=role,
        host=node.name,
        binary=role,
        **_when(when),
    )


def verify_api(b: PhaseBuilder, role: str, *, deviation: bool = False) -> Step | None:
    """The site's `role` API answers a fresh version discovery, and a microversioned one with
    the target's newest microversion."""
    nodes = b.site.with_role(role)
    if not nodes:
        return None
    kind = API_SERVICE_TYPES[role]
    target = b.ctx.inventory.upgrade.target.id
    facts_name = MICROVERSION_FACTS.get(kind)
    expect = upstream.newest_microversion(target, facts_name) if facts_name else None
    title = (
        f"the {kind} API of {b.site.region} answers with {target}'s newest microversion"
        if facts_name
        else f"the {kind} API of {b.site.region} answers"
    )
    args: dict[str, Any] = {"service_type": kind, "target": target}
    if facts_name:
        args["expect_microversion"] = expect  # None: not known for the target, said so
    if deviation:
        args["deviation"] = True
    return b.cloud("verify-api", nodes[0], role, title, qualifier=kind, **args)


def schema_version(
    b: PhaseBuilder,
    node: Node,
    role: str,
    *,
    expanded_only: bool = False,
    deviation: bool = False,
    when: dict[str, str] | None = None,
) -> None:
    """Read each of the service's databases' revisions with its own tool and compare them
    with the target's heads. `expanded_only`: after an expand, before the contract, the
    contract branch is still at the source's head."""
    service = ROLES[role].service
    source = upstream.facts(b.ctx.inventory.upgrade.source.id)
    target_id = b.ctx.inventory.upgrade.target.id
    target = upstream.facts(target_id)
    for action, database in (("schema-version", service), ("api-schema-version", "nova_api")):
        if database not in upstream.DATABASES_OF.get(service, ()):
            continue
        expect: list[str] | None = None
        if target is not None:
            heads = dict(target.schema_heads[database])
            before = dict(source.schema_heads[database]) if source else None
            if expanded_only and "contract" in heads:
                heads["contract"] = before["contract"] if before else ""
            expect = printed_revisions(database, heads, before)
            if "" in expect:  # the source's contract head is not known: not compared
                expect = None
        b.add(
            action,
            node,
            role,
            args={
                "expect_revisions": expect,
                "database": database,
                "target": target_id,
                **({"deviation": True} if deviation else {}),
                **_when(when),
            },
        )


def service_versions(b: PhaseBuilder, node: Node, role: str, *, deviation: bool = False) -> None:
    """nova's services record the target's service version (written by each process when it
    started): in the phase, each nova host of the site the run upgraded; in the final
    verification (`deviation`), every row of the site's cell database, of any host."""
    target_id = b.ctx.inventory.upgrade.target.id
    known = upstream.facts(target_id)
    args: dict[str, Any] = {
        "expect_service_version": known.nova_service_version if known else None,
        "target": target_id,
        "site_check": True,
    }
    if deviation:
        args["deviation"] = True
    else:
        args["hosts"] = sorted(
            n.name for n in b.site.nodes if any(ROLES.get(r, None) and ROLES[r].service == "nova"
                                                for r in n.roles)
        )  # fmt: skip
    b.add("service-versions", node, role, args=args)


# a site with a node of these roles has services its region's APIs list by host (or the APIs
# that list them): its listing is compared with the inventory
SCOPED_ROLES = frozenset(ROLES) - {"keystone", "horizon"}


def scope_args(site: Any) -> dict[str, Any]:
    """What a scope check carries: the site's `unmanaged:` declarations (journalled with the
    plan, so a replay shows what was left alone and why)."""
    return {
        "unmanaged": [
            {"host": d.host, "reason": d.reason, "binaries": list(d.binaries)}
            for d in site.unmanaged
        ],
        "site_check": True,
    }


def scope_step(b: PhaseBuilder, *, deviation: bool = False) -> None:
    """Every service and agent the site's APIs list is on a node of the inventory with a role
    that upgrades it, or declared unmanaged (core/cloud_scope.py)."""
    nodes = [n for n in b.site.nodes if any(r in ROLES for r in n.roles)]
    if not any(r in SCOPED_ROLES for n in nodes for r in n.roles):
        return  # an identity or dashboard site only: its region lists no services by host
    first = next((n for n in nodes if any(n.has(r) for r in API_SERVICE_TYPES)), nodes[0])
    role = next(r for r in first.roles if r in ROLES)
    args: dict[str, Any] = scope_args(b.site)
    if deviation:
        args["deviation"] = True
    title = f"the services {b.site.region} lists are the inventory's (or declared unmanaged)"
    b.cloud("verify-scope", first, role, title, None, **args)


def scope_phase(b: PhaseBuilder) -> None:
    """The first phase, per site: the cloud's services against the inventory, before anything
    moves. One the APIs list that the plan would not upgrade fails it (a failure gate
    --auto-approve never answers), unless the inventory declares it unmanaged."""
    b.stage("scope", f"compare {b.site.name}'s services with the inventory", "pre")
    scope_step(b)


def verify_phase(b: PhaseBuilder) -> None:
    """The last phase, per site: every API the site's catalog lists answers (microversioned
    ones at the target's newest), every service record and agent the APIs list is up, every
    program of every node runs the target's code, every nova service records the target's
    service version, every schema the site keeps is at the target's heads. What does not is
    a deviation: the run ends `complete with deviations`."""
    nodes = [n for n in b.site.nodes if any(r in ROLES for r in n.roles)]
    if not nodes:
        return
    target = b.ctx.inventory.upgrade.target
    b.stage("verify", f"read the whole of {b.site.name} back at {target.id}", "post")
    first = next((n for n in nodes if any(n.has(r) for r in API_SERVICE_TYPES)), nodes[0])
    role = next(r for r in first.roles if r in ROLES)
    expect = {
        kind: upstream.newest_microversion(target.id, name)
        for kind, name in MICROVERSION_FACTS.items()
    }
    b.cloud(
        "verify-cloud",
        first,
        role,
        f"every API and service {b.site.region} lists answers, at {target.id}",
        target=target.id,
        expect_microversions=expect,
        deviation=True,
        site_check=True,
    )
    scope_step(b, deviation=True)  # nothing appeared during the run that it did not upgrade
    for node in nodes:
        running_version(b, node, [r for r in node.roles if r in ROLES], deviation=True)
        b.ctx.method.hooks.verify_node(b, node, next(r for r in node.roles if r in ROLES))
    controllers = [
        n for n in nodes if any(n.has(r) for r in ("nova-conductor", "nova-scheduler", "nova-api"))
    ]
    if controllers:
        node = controllers[0]
        role = next(r for r in ("nova-conductor", "nova-scheduler", "nova-api") if node.has(r))
        service_versions(b, node, role, deviation=True)
    for roles in SCHEMA_ROLES.values():  # every schema the site keeps, at the target's heads
        holder = next(((n, r) for r in roles for n in b.site.with_role(r)), None)
        if holder is not None:
            schema_version(b, holder[0], holder[1], deviation=True)
