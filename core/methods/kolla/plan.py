"""The kolla-ansible upgrade, phase by phase, as kolla-ansible's own procedure runs it.

kolla-ansible orchestrates each service itself (schema migrations, stops, restarts, its own
`nova-status upgrade check`), so Rollgate gates and batches only through what kolla supports
(docs/kolla-method.md):
- preparation on each site's deploy host (a phase of its own, before the window): back up
  /etc/kolla, install the target's kolla-ansible in a virtualenv, `install-deps`, merge
  passwords, set `openstack_release`, `pull`, `prechecks`;
- each site's first phase backs every database up (`mariadb-backup`) and upgrades the
  infrastructure plays kolla runs first;
- control-plane services by tag with no host limit;
- computes in canary and batches, each limited to its compute hosts with every role a
  compute runs (openvswitch or ovn-controller, nova, neutron); only the compute group is
  ever left out of a control-plane run;
- nova's reload and online-data-migration plays once, without a limit, after every compute.
After each kolla-ansible run, each host's containers are checked by what the container
engine prints (running, healthy, the target's image), never by its exit status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollgate.core.errors import UserError
from rollgate.core.inventory import Inventory, Node
from rollgate.core.methods import PlanHooks
from rollgate.core.methods.kolla.mapping import (
    INFRA_TAGS,
    MODELLED_PROJECTS,
    NETWORK_TAG,
    SITE_ORDER,
    host_containers,
    listed_services,
)
from rollgate.core.plan import (
    agents_up,
    compute_back,
    compute_groups,
    fence_compute,
    verify_compute_api,
)
from rollgate.core.plan_checks import schema_version, verify_api
from rollgate.core.releases import CATALOGUE, find_release, kolla_ansible_major
from rollgate.core.roles import AGENT_ORDER, API_SERVICE_TYPES, ROLES

DEPLOY = "deployment"  # the role of the host kolla-ansible runs on

# The values kolla's commands get besides core/plan.py's (recipe overrides may use them)
VALUE_NAMES = frozenset(
    {"kolla_venv", "kolla_major", "kolla_pip_spec", "release_sed", "release_line",
     "mariabackup_on", "kolla_tags", "kolla_limit", "kolla_skip", "kolla_service_list",
     "kolla_known_services"}
)  # fmt: skip


# globals.yml's line that turns kolla's mariadb-backup on (grep -E)
MARIABACKUP_ON = "^enable_mariabackup: *[\"']?(yes|true)[\"']? *$"


def plan_values(inventory: Inventory, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The values kolla's commands need: the target's virtualenv and version, globals' line."""
    target = inventory.upgrade.target
    major = kolla_ansible_major(target)
    line = f'openstack_release: "{target.id}"'
    return {
        "kolla_venv": f"{variables.get('kolla_venv_root', '/opt/kolla-ansible')}/{target.id}",
        "kolla_major": str(major),
        "kolla_pip_spec": f"kolla-ansible>={major},<{major + 1}",
        "kolla_service_list": ",".join(listed_services(str(variables.get("kolla_services", "")))),
        "kolla_known_services": ",".join(SITE_ORDER),
        "release_sed": f"s/^#? *openstack_release:.*/{line}/",
        "release_line": line,
        "mariabackup_on": MARIABACKUP_ON,
    }


def deploy_host(b: Any) -> Node:
    """The site's deploy host (the inventory check makes sure there is exactly one)."""
    return b.site.with_role(DEPLOY)[0]


def _plugin(b: Any) -> str:
    return str(b.recipe.variables.get("neutron_plugin_agent", "openvswitch"))


def _deploy(b: Any, action: str, service: str, **extra: Any) -> Any:
    return b.add(action, deploy_host(b), DEPLOY, service=service, **extra)


def _containers_healthy(
    b: Any, nodes: list[Node], roles: list[str], name: str, title: str, kind: str = "control"
) -> None:
    """A stage checking, on each node, every container of `roles` it runs: running, healthy,
    on the target's image (E14: `docker inspect` exits 0 when it prints false)."""
    target = b.ctx.inventory.upgrade.target.id
    healthchecks = str(b.recipe.variables.get("container_healthchecks", "yes")) != "no"
    state = "running healthy" if healthchecks else "running"
    pattern = rf"{state} \S+:{target.replace('.', '[.]')}(-\S+)?"
    checks = []
    for node in nodes:
        seen: set[str] = set()
        for role in roles:
            if not node.has(role):
                continue
            for container in host_containers(role, _plugin(b)):
                if container not in seen:
                    seen.add(container)
                    checks.append((node, role, container))
    if not checks:
        return
    b.stage(name, title, kind)
    for node, role, container in checks:
        b.add(
            "container-check" if healthchecks else "container-state",
            node,
            role,
            args={
                "expect_match": pattern,
                "hint": f"{container} on {node.name} is not {state} on the {target} "
                f"image: read `{b.recipe.variables.get('container_engine', 'docker')} logs "
                f"{container}` there and the kolla-ansible output above",
            },
            unit=container,
            container=container,
        )


def _site_first(b: Any) -> None:
    """Once per site, before its first service moves: every database backed up with kolla's
    mariadb-backup (unless recipe.variables.db_backup is "no"), then the infrastructure plays
    kolla's site.yml runs before any OpenStack service."""
    if b.site.name in b.ctx.started:
        return
    b.ctx.started.add(b.site.name)
    b.stage("kolla-pre", f"back up the databases and upgrade the infrastructure at {b.site.name}",
            "pre")  # fmt: skip
    if str(b.recipe.variables.get("db_backup", "yes")) != "no":
        config = b.recipe.variables.get("kolla_config_dir", "/etc/kolla")
        b.add(
            "db-backup",
            deploy_host(b),
            DEPLOY,
            service="mariadb",
            args={
                "hint": f"enable_mariabackup is not on in {config}/globals.yml, and kolla's "
                "mariadb-backup would then back nothing up and still exit 0: set it to "
                '"yes" and run kolla-ansible reconfigure -t mariadb, or recipe.variables.'
                'db_backup: "no" to go on without a backup',
                "backup": {
                    "databases": ["every database (--full)"],
                    "source": b.ctx.inventory.upgrade.source.id,
                    # kolla's mariadb-backup writes into a Docker volume on the host that
                    # ran it; nothing copies it off (docs/kolla-method.md)
                    "where": "the mariadb_backup volume on the database host kolla-ansible "
                    "ran the backup on (kolla's mariadb-backup; not copied off by Rollgate)",
                },
            },
        )
    _deploy(b, "upgrade-service", "kolla", kolla_tags=",".join(INFRA_TAGS))


def _service(b: Any, tag: str, roles: list[str], status_role: str | None) -> None:
    """A control-plane service, kolla's way: one run of its tag, no host limit; then its
    containers, then the target's status check in the new container."""
    present = [r for r in roles if b.site.with_role(r)]
    if not present:
        return
    _site_first(b)
    b.stage(tag, f"upgrade {tag} on every {tag} host", "control")
    _deploy(b, "upgrade-service", tag, kolla_tags=tag)
    nodes = [n for n in b.site.nodes if any(n.has(r) for r in present)]
    _containers_healthy(b, nodes, present, f"{tag}-check", f"{tag} containers on {tag}'s hosts")
    if status_role and b.site.with_role(status_role):
        b.add("status-check", b.site.with_role(status_role)[0], status_role)
        schema_version(b, b.site.with_role(status_role)[0], status_role)
    for role in present:
        if role in API_SERVICE_TYPES:
            verify_api(b, role)


def prepare(b: Any) -> None:
    """The deploy host's preparation, in the order of kolla's upgrade procedure."""
    if not b.site.with_role(DEPLOY):
        return
    d = deploy_host(b)
    values = b.ctx.values(d, DEPLOY, {"service": "kolla"})
    b.stage("kolla", f"kolla-ansible {values['kolla_major']}.x on {d.name}", "pre")
    _deploy(b, "config-backup", "kolla")
    _deploy(b, "install-kolla", "kolla")
    major = values["kolla_major"]
    b.add(
        "kolla-version",
        d,
        DEPLOY,
        service="kolla",
        args={
            "expect_match": rf"kolla-ansible {major}\.\d+\.\d+\S*",
            "hint": f"the virtualenv {values['kolla_venv']} must hold kolla-ansible {major}.x "
            f"(the {b.ctx.inventory.upgrade.target.id} release)",
        },
    )
    _deploy(b, "install-deps", "kolla")
    _deploy(b, "merge-passwords", "kolla")
    b.add(
        "settings-check",
        d,
        DEPLOY,
        service="kolla",
        args={
            "hint": "set the inventory's recipe.variables to what globals.yml says "
            "(neutron_plugin_agent, container_engine, container_healthchecks): the plan was "
            "built from them"
        },
    )
    b.add(
        "set-release",
        d,
        DEPLOY,
        service="kolla",
        args={
            "expect_line": values["release_line"],
            "hint": "globals.yml needs an openstack_release line (commented or not) for "
            "Rollgate to set",
        },
    )
    b.stage("kolla-images", "pull the target's images and run kolla's prechecks", "pre")
    _deploy(b, "pull", "kolla")
    _deploy(b, "prechecks", "kolla")


def identity(b: Any) -> None:
    _service(b, "keystone", ["keystone"], "keystone")


def image(b: Any) -> None:
    _service(b, "glance", ["glance-api"], "glance-api")


def block_storage(b: Any) -> None:
    roles = ["cinder-scheduler", "cinder-volume", "cinder-backup", "cinder-api"]
    present = [r for r in roles if b.site.with_role(r)]
    if present:
        _site_first(b)
        b.stage("cinder-pre", "finish the previous release's cinder migrations", "pre")
        b.add("previous-migrations", b.site.with_role(present[0])[0], present[0])
    _service(b, "cinder", roles, "cinder-api")
    _the_rest(b)


def unmodelled(variables: Mapping[str, Any]) -> list[str]:
    """The enabled projects (recipe.variables.kolla_services) no Rollgate role models, in
    kolla's site.yml order (one it does not know, after those)."""
    listed = [s for s in listed_services(str(variables.get("kolla_services", "")))
              if s not in MODELLED_PROJECTS]  # fmt: skip
    known = [s for s in SITE_ORDER if s in listed]
    return known + sorted(set(listed) - set(known))


def _the_rest(b: Any) -> None:
    """The enabled services outside Rollgate's roles (heat, octavia ...), after the modelled
    ones, in one kolla-ansible run with their tags, as site.yml orders them: nothing of the
    cloud stays on the source's images."""
    rest = unmodelled(b.recipe.variables)
    if not rest or not b.site.with_role(DEPLOY):
        return
    _site_first(b)
    b.stage("kolla-rest", f"the rest of kolla's services: {', '.join(rest)}", "control")
    _deploy(b, "upgrade-service", "kolla", kolla_tags=",".join(rest))


def dashboard(b: Any) -> None:
    _service(b, "horizon", ["horizon"], None)


def compute(b: Any) -> None:
    """placement; the nova and network control plane (every host but the computes), its
    online migrations held back; computes in canary and batches with their network; then
    nova's reload and online migrations once over every host."""
    site = b.site
    nova_ctl = [r for r in ("nova-conductor", "nova-scheduler", "nova-api") if site.with_role(r)]
    network = ["neutron-server", *AGENT_ORDER]
    if not (site.with_role("placement-api") or nova_ctl or site.with_role("nova-compute")):
        return
    _site_first(b)
    if site.with_role("placement-api") or nova_ctl:
        b.stage("compute-pre", "finish the previous release's online migrations", "pre")
        for role in ("placement-api", *nova_ctl[:1]):
            if site.with_role(role):
                b.add("previous-migrations", site.with_role(role)[0], role)
    _service(b, "placement", ["placement-api"], "placement-api")
    switch = NETWORK_TAG.get(_plugin(b), "openvswitch")
    tags = f"{switch},nova,neutron"
    computes = site.with_role("nova-compute")
    others = [n for n in site.nodes if not n.has("nova-compute")]
    control_roles = [*nova_ctl, *network]
    if any(n.has(r) for n in others for r in control_roles):
        b.stage("nova-control", "nova and networking on every host but the computes", "control")
        _deploy(
            b,
            "upgrade-control",
            "nova",
            kolla_tags=tags,
            kolla_limit="all:!compute",
            kolla_skip="nova-online-data-migrations",
        )
        _containers_healthy(
            b, others, control_roles, "nova-control-check", "nova and network containers"
        )
        if nova_ctl:
            b.add("status-check", site.with_role(nova_ctl[-1])[0], nova_ctl[-1])
        for role in ("nova-api", "neutron-server"):  # the containers their tools run in
            if site.with_role(role):
                schema_version(b, site.with_role(role)[0], role)
        if site.with_role("neutron-server"):
            verify_api(b, "neutron-server")
    _compute_batches(b, computes, tags)
    if _plugin(b) == "ovn" and any("ovsdb" in n.roles for n in site.nodes):
        # OVN: the controllers first, then northd and the central databases (OVN's upgrade
        # order; kolla's site.yml runs ovn-db after ovn-controller)
        b.stage("ovn-db", "OVN's northd and central databases, after every ovn-controller",
                "post")  # fmt: skip
        _deploy(b, "upgrade-service", "ovn-db", kolla_tags="ovn-db")
    if nova_ctl or computes:
        b.stage(
            "nova-final",
            "nova's reload (drops the RPC pin) and online data migrations, every host once",
            "post",
        )
        _deploy(b, "upgrade-service", "nova", kolla_tags="nova-reload,nova-online-data-migrations")
        _containers_healthy(
            b, [n for n in site.nodes if any(n.has(r) for r in (*nova_ctl, "nova-compute"))],
            [*nova_ctl, "nova-compute"], "nova-final-check", "nova containers after the reload",
            "post",
        )  # fmt: skip
        if nova_ctl:
            b.add("status-check", site.with_role(nova_ctl[-1])[0], nova_ctl[-1])
        verify_compute_api(b)


def _compute_batches(b: Any, computes: list[Node], tags: str) -> None:
    """Each batch (the canary first): out of the scheduler, kolla's run limited to its hosts,
    its containers and reports checked, back in the scheduler."""
    inv = b.ctx.inventory
    reason = f"rollgate: upgrading {inv.cloud} to {inv.upgrade.target.id}"
    for name, title, kind, nodes, gate in compute_groups(b, computes):
        b.stage(f"{name}-fence", f"{title}: out of the scheduler", kind, gate)
        for node in nodes:
            fence_compute(b, node, reason)
        b.stage(name, title, kind)
        _deploy(b, "upgrade-computes", "nova", kolla_tags=tags,
                kolla_limit=",".join(n.name for n in nodes))  # fmt: skip
        roles = ["nova-compute", *AGENT_ORDER]
        _containers_healthy(
            b, nodes, roles, f"{name}-check", f"{title}: containers and reports", kind
        )
        for node in nodes:
            agents = [a for a in AGENT_ORDER if node.has(a)]
            if agents:
                agents_up(b, node, agents)
            compute_back(b, node)


class KollaHooks(PlanHooks):
    def verify_node(self, builder: Any, node: Any, role: str) -> None:
        """Every container on the node runs the target's image, whatever Rollgate models
        (`docker|podman ps`: its name and image, one line each)."""
        target = builder.ctx.inventory.upgrade.target.id
        builder.add(
            "containers-at-target",
            node,
            role,
            args={
                "expect_every_match": rf"\S+ \S+:{target.replace('.', '[.]')}(-\S+)?",
                "deviation": True,
            },
        )


BUILDERS = {
    "prepare": prepare,
    "identity": identity,
    "image": image,
    "compute": compute,
    "block-storage": block_storage,
    "dashboard": dashboard,
}


def check_inventory(spec: Any, target: Any, problem: Any) -> None:
    """kolla runs from one deploy host per site, and upgrades a host's nova controller and
    compute in one play: a node with both cannot be batched apart from the control plane.
    A skip-level (SLURP) jump is refused: kolla's needs steps this plan does not make."""
    try:
        source = find_release(spec.upgrade.from_)
    except UserError:
        source = None  # the inventory's own check names a release it does not know
    if source is not None and target.index - source.index > 1:
        problem(
            ("upgrade", "to"),
            f"the kolla method does not plan a skip-level (SLURP) upgrade ({source.id} -> "
            f"{target.id}): kolla-ansible's SLURP upgrade needs RabbitMQ moved through each "
            "version its target allows first (`kolla-ansible rabbitmq-upgrade VERSION`; the "
            "upgrade's "
            "rabbitmq-version-check stops otherwise) and the target's ansible-core, which "
            f"Rollgate does not plan; upgrade one release at a time ({source.id} -> "
            f"{CATALOGUE[source.index + 1].id}, then on)",
        )
    listed = set(listed_services(str(spec.recipe.variables.get("kolla_services", ""))
                                 if spec.recipe else ""))  # fmt: skip
    if listed:
        projects = {ROLES[r].service for site in spec.sites.values() for n in site.nodes
                    for r in n.roles if r in ROLES}  # fmt: skip
        if missing := sorted(projects - listed):
            problem(
                ("recipe", "variables", "kolla_services"),
                f"kolla_services does not list {', '.join(missing)}, which nodes of the "
                "inventory run: list every project globals.yml enables",
            )
    for name, site in spec.sites.items():
        deploy = [n for n in site.nodes if DEPLOY in n.roles]
        if len(deploy) != 1:
            problem(
                ("sites", name, "nodes"),
                f"site {name!r} has {len(deploy)} nodes with the deployment role; the kolla "
                "method needs exactly one: the host that runs kolla-ansible for the site "
                "(its address may be 127.0.0.1 when Rollgate runs there)",
            )
        for i, node in enumerate(site.nodes):
            control = [r for r in node.roles if r in ROLES and ROLES[r].service == "nova"
                       and r != "nova-compute"]  # fmt: skip
            if control and "nova-compute" in node.roles:
                problem(
                    ("sites", name, "nodes", i, "roles"),
                    f"{node.name} runs nova-compute beside {', '.join(control)}: kolla "
                    "upgrades both with the control plane, so it cannot be a compute batch; "
                    "Rollgate's kolla method needs computes apart from nova's controllers",
                )
