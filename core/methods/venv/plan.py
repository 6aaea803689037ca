"""The virtualenv method's plan: core/plan.py's service order, with a preparation before it.

- Preparation (a phase that may run before the window): on each node, one at a time, the
  target release's virtualenv is installed beside the old one from PyPI under the release's
  upper-constraints, and each service the node runs is read from it at the target version.
- Then each service moves as core/plan.py orders it: the switch of its programs to the new
  virtualenv is the "install" (nothing restarts); the target's status check and schema steps
  run from the new virtualenv before anything restarts; restarts and checks go through the
  service manager (supervisor or systemd, the recipe variable `service_manager`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollgate.core.inventory import Inventory
from rollgate.core.methods import PlanHooks
from rollgate.core.methods.venv.mapping import DISTRIBUTIONS, EXTRAS, MANAGERS
from rollgate.core.plan import BUILDERS as PER_NODE
from rollgate.core.releases import Release
from rollgate.core.roles import INFRA_ROLES, ROLES

VALUE_NAMES = frozenset(
    {"venv_from", "venv_to", "venv_base", "requirements", "constraints_file",
     *MANAGERS["supervisor"]}
)  # fmt: skip


def requirements(services: set[str], release: Release) -> list[str]:
    """pip requirements for `release`'s virtualenv: each service's distribution at that
    release's major version, then what every virtualenv carries."""
    wanted = {
        DISTRIBUTIONS[r]: ROLES[r].service for r in DISTRIBUTIONS if ROLES[r].service in services
    }
    specs = []
    for dist, service in sorted(wanted.items()):
        major = release.majors[service]
        specs.append(f"{dist}>={major},<{major + 1}")
    return [*specs, *EXTRAS]


def cloud_services(inventory: Inventory) -> set[str]:
    return {
        ROLES[r].service
        for site in inventory.sites
        for node in site.nodes
        for r in node.roles
        if r in DISTRIBUTIONS
    }


def plan_values(inventory: Inventory, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The virtualenvs of both releases, the target's requirements and constraints, and the
    service manager's words."""
    root = str(variables.get("venv_root", "/openstack/venvs")).rstrip("/")
    upgrade = inventory.upgrade
    manager = MANAGERS.get(str(variables.get("service_manager", "supervisor")), {})
    return {
        "venv_from": f"{root}/{upgrade.source.id}",
        "venv_to": f"{root}/{upgrade.target.id}",
        "venv_base": root,
        "requirements": requirements(cloud_services(inventory), upgrade.target),
        "constraints_file": f"{str(variables.get('constraints', '')).rstrip('/')}/"
        f"{upgrade.target.id}",
        **manager,
    }


def prepare(b: Any) -> None:
    """Each node's target virtualenv, one node at a time (a node's build takes its cores)."""
    target = b.ctx.inventory.upgrade.target
    for node in b.site.nodes:
        services = _distributions(node.roles)
        if not services:
            continue
        first = services[0][0]
        b.stage(f"venv@{node.name}", f"the {target.id} virtualenv on {node.name}", "pre")
        b.add("install-venv", node, first)
        for role, dist in services:
            b.add(
                "venv-version",
                node,
                role,
                args={"expect": target.id, "service": ROLES[role].service, "package": dist},
                package=dist,
            )


# the preparation, then core/plan.py's per-node builders
BUILDERS = {"prepare": prepare, **PER_NODE}


class VenvHooks(PlanHooks):
    """Around each switch: the target virtualenv is there, the versions before and after."""

    def before_first_install(self, builder: Any, node: Any, role: str) -> None:
        builder.add("venv-ready", node, role)

    def before_install(self, builder: Any, node: Any, role: str, roles: list[str]) -> None:
        for r, dist in _distributions(sorted(roles)):
            builder.add("record-version", node, r, args={"package": dist}, package=dist)

    def after_install(self, builder: Any, node: Any, role: str, roles: list[str]) -> None:
        target = builder.ctx.inventory.upgrade.target.id
        for r, dist in _distributions(sorted(roles)):
            builder.add(
                "verify-version",
                node,
                r,
                args={"expect": target, "service": ROLES[r].service, "package": dist},
                package=dist,
            )


def _distributions(roles: Any) -> list[tuple[str, str]]:
    """(role, distribution) for each distribution the roles run, by distribution; the first
    of the roles (in the order given) stands for its distribution."""
    out: dict[str, str] = {}
    for r in roles:
        if r in DISTRIBUTIONS:
            out.setdefault(DISTRIBUTIONS[r], r)
    return [(r, d) for d, r in sorted(out.items())]


def check_inventory(spec: Any, target: Any, problem: Any) -> None:
    """Every role must be one the method can install; the service manager one it knows."""
    del target
    manager = spec.recipe.variables.get("service_manager") if spec.recipe else None
    if manager is not None and str(manager) not in MANAGERS:
        problem(
            ("recipe", "variables", "service_manager"),
            f"service_manager {manager!r} is not one the virtualenv method drives; "
            f"use {' or '.join(MANAGERS)}",
        )
    for name, site in spec.sites.items():
        for i, node in enumerate(site.nodes):
            for role in node.roles:
                if role not in DISTRIBUTIONS and role not in INFRA_ROLES:
                    problem(
                        ("sites", name, "nodes", i, "roles"),
                        f"{node.name}: the virtualenv method does not install {role} (it "
                        f"installs {', '.join(sorted(DISTRIBUTIONS))}); use the apt or kolla "
                        "method for this cloud",
                    )
