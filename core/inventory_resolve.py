"""From a validated inventory spec to the Inventory a plan is built from, in named steps: the
upgrade path, the sites with their nodes and roles (SSH and API defaults merged in), the shared
services, the method's own rules, the policy's limits, the recipe's variables and actions, the
lab and the window. Every step reports each problem with its file and line; the inventory is
refused with all of them at once."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from rollgate.core import hostrange
from rollgate.core.cloud_scope import Declared
from rollgate.core.errors import UserError
from rollgate.core.inventory import (
    HOSTNAME_RE,
    NAME_RE,
    Inventory,
    InventoryError,
    InventorySpec,
    Node,
    NodeSpec,
    OpenStackConfig,
    RecipeOverrides,
    Site,
    SiteSpec,
    SshConfig,
    spec_digest,
    suggest,
)
from rollgate.core.releases import (
    Release,
    ReleaseError,
    UpgradePath,
    find_release,
    validate_path,
)
from rollgate.core.roles import INFRA_ROLES, ROLES
from rollgate.core.yamlsource import Path, Problem, YamlDocument, format_path

KNOWN_ROLES = sorted([*ROLES, *INFRA_ROLES])


def resolve(spec: InventorySpec, doc: YamlDocument) -> Inventory:
    """The Inventory of `spec`, or InventoryError with every problem found."""
    found = _Resolution(spec, doc)
    upgrade = found.upgrade()
    sites = found.sites()
    found.shared_services(sites)
    if upgrade is not None:
        found.method_rules(upgrade)
    found.policy_limits(sites)
    found.recipe_variables()
    found.recipe_actions()
    found.lab(sites)
    found.window()
    if found.problems or upgrade is None:
        raise InventoryError(found.problems)
    identity = spec.shared.identity.site
    sites.sort(key=lambda s: (s.name != identity, s.priority, s.name))
    return Inventory(
        file=doc.file,
        cloud=spec.cloud,
        upgrade=upgrade,
        method=spec.method,
        identity_site=identity,
        dashboard_site=spec.shared.dashboard.site if spec.shared.dashboard else None,
        sites=tuple(sites),
        policy=spec.policy,
        window=spec.window,
        lab=spec.lab,
        spec=spec,
        digest=spec_digest(spec),
    )


class _Resolution:
    """One inventory being resolved: the spec, its YAML (for line numbers), the problems."""

    def __init__(self, spec: InventorySpec, doc: YamlDocument):
        self.spec = spec
        self.doc = doc
        self.problems: list[Problem] = []
        self._seen_names: dict[str, Path] = {}
        self._seen_addresses: dict[str, Path] = {}

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(
            Problem(self.doc.file, self.doc.line_of(path), format_path(path), message)
        )

    # ---------------------------------------------------------------- the upgrade

    def upgrade(self) -> UpgradePath | None:
        """Both releases known, and a supported path between them."""
        source = self._release(("upgrade", "from"), self.spec.upgrade.from_)
        target = self._release(("upgrade", "to"), self.spec.upgrade.to)
        if source is None or target is None:
            return None
        try:
            path = validate_path(source, target)
        except ReleaseError as exc:
            self.problem(("upgrade",), str(exc))
            return None
        from rollgate.core.lifecycle import refusal

        if why := refusal(path):
            self.problem(("upgrade", "to"), why)
            return None
        return path

    def _release(self, path: Path, text: str) -> Release | None:
        try:
            return find_release(text)
        except ReleaseError as exc:
            self.problem(path, str(exc))
            return None

    # ---------------------------------------------------------------- sites and nodes

    def sites(self) -> list[Site]:
        defaults = SshConfig().merged(self.spec.ssh)
        api = OpenStackConfig(**self.spec.openstack.model_dump())
        return [self._site(name, site, defaults, api) for name, site in self.spec.sites.items()]

    def _site(self, name: str, site: SiteSpec, ssh: SshConfig, api: OpenStackConfig) -> Site:
        where: Path = ("sites", name)
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.problem(
                where, f"{name!r} is not a valid site name: use letters, digits, '.', '_', '-'"
            )
        before = len(self.problems)
        site_ssh = ssh.merged(site.ssh)
        nodes = [
            node
            for i, spec_node in enumerate(site.nodes)
            for node in self._nodes(name, (*where, "nodes", i), spec_node, site_ssh)
        ]
        nodes.sort(key=lambda n: hostrange.natural_key(n.name))
        roles = {r for n in nodes for r in n.roles}
        rejected_nodes = len(self.problems) > before  # no cascade from a rejected node
        if "nova-compute" in roles and "nova-conductor" not in roles and not rejected_nodes:
            self.problem(
                (*where, "nodes"),
                f"site {name!r} has nova-compute nodes but no nova-conductor; add the "
                "nova-conductor role to a controller of this site",
            )
        if site.openstack is not None:
            changes = {k: v for k, v in site.openstack.model_dump().items() if v is not None}
            api = OpenStackConfig(**{**api.__dict__, **changes})
        region = site.region or api.region or name
        return Site(
            name, region, site.priority, tuple(nodes), api, self._unmanaged(where, site, nodes)
        )

    def _unmanaged(self, where: Path, site: SiteSpec, nodes: list[Node]) -> tuple[Declared, ...]:
        """The site's `unmanaged:` entries; a node of the inventory can only have some of its
        services declared (the plan upgrades the rest)."""
        names = {n.name for n in nodes}
        out = []
        for i, entry in enumerate(site.unmanaged):
            if entry.host in names and not entry.binaries:
                self.problem(
                    (*where, "unmanaged", i, "host"),
                    f"{entry.host} is a node of this site: Rollgate upgrades it; name the "
                    "binaries it leaves alone (binaries: [...]), or remove the node",
                )
            out.append(Declared(entry.host, entry.reason, tuple(entry.binaries)))
        return tuple(out)

    def _nodes(self, site: str, where: Path, spec: NodeSpec, ssh: SshConfig) -> list[Node]:
        """The nodes one entry names (a host range names many), each checked."""
        self._roles(where, spec.roles)
        pairs = self._expand(where, spec)
        node_ssh = ssh.merged(spec.ssh)
        return [
            Node(name, address, site, tuple(spec.roles), spec.az, node_ssh)
            for name, address in pairs
            if self._unique_and_valid(where, name, address)
        ]

    def _roles(self, where: Path, roles: list[str]) -> None:
        for j, role in enumerate(roles):
            if role not in ROLES and role not in INFRA_ROLES:
                self.problem(
                    (*where, "roles", j),
                    f"unknown role {role!r}{suggest(role, KNOWN_ROLES)} "
                    f"(known roles: {', '.join(KNOWN_ROLES)})",
                )

    def _expand(self, where: Path, spec: NodeSpec) -> list[tuple[str, str]]:
        """(name, address) of each node an entry's host ranges name; [] when they do not
        match (said)."""
        limit = self.spec.policy.max_hosts
        try:
            names = hostrange.expand(spec.name, limit=limit)
        except hostrange.HostRangeError as exc:
            self.problem((*where, "name"), str(exc))
            return []
        try:
            addresses = hostrange.expand(spec.address, limit=limit)
        except hostrange.HostRangeError as exc:
            self.problem((*where, "address"), str(exc))
            return []
        if len(addresses) == 1 and len(names) > 1:
            self.problem(
                (*where, "address"),
                f"{spec.address!r} is one address for {len(names)} nodes "
                f"({spec.name}); give a matching range such as "
                f"{_range_hint(spec.address, len(names))}",
            )
            return []
        if len(addresses) != len(names):
            self.problem(
                (*where, "address"),
                f"{spec.address!r} expands to {len(addresses)} addresses but "
                f"{spec.name!r} to {len(names)} names; make both ranges the same length",
            )
            return []
        return list(zip(names, addresses, strict=True))

    def _unique_and_valid(self, where: Path, name: str, address: str) -> bool:
        """A node's name and address are well formed and used by no other node."""
        if not NAME_RE.match(name):
            self.problem(
                (*where, "name"),
                f"{name!r} is not a valid node name: use letters, digits, '.', '_', '-'",
            )
            return False
        if not _valid_address(address):
            self.problem(
                (*where, "address"),
                f"{address!r} is not an IP address or host name; shell "
                "metacharacters and spaces are not allowed",
            )
            return False
        if name in self._seen_names:
            self.problem(
                (*where, "name"),
                f"duplicate node name {name!r} (first defined at line "
                f"{self.doc.line_of(self._seen_names[name])}); node names must be unique",
            )
            return False
        if address in self._seen_addresses:
            self.problem(
                (*where, "address"),
                f"duplicate address {address!r} (first used at line "
                f"{self.doc.line_of(self._seen_addresses[address])}); give each node its own",
            )
            return False
        self._seen_names[name] = (*where, "name")
        self._seen_addresses[address] = (*where, "address")
        return True

    # ---------------------------------------------------------------- shared services

    def shared_services(self, sites: list[Site]) -> None:
        """The shared keystone lives at its site alone; a shared dashboard likewise."""
        names = [s.name for s in sites]
        identity = self.spec.shared.identity.site
        if identity not in self.spec.sites:
            self.problem(
                ("shared", "identity", "site"),
                f"unknown site {identity!r}{suggest(identity, names)} (sites: {', '.join(names)})",
            )
        else:
            self._only_at(sites, identity, "keystone", self._identity_problem)
        dashboard = self.spec.shared.dashboard.site if self.spec.shared.dashboard else None
        if dashboard is None:
            return
        if dashboard not in self.spec.sites:
            self.problem(
                ("shared", "dashboard", "site"),
                f"unknown site {dashboard!r}{suggest(dashboard, names)} "
                f"(sites: {', '.join(names)})",
            )
        else:
            self._only_at(sites, dashboard, "horizon", self._dashboard_problem)

    @staticmethod
    def _only_at(sites: list[Site], shared: str, role: str, report: Any) -> None:
        for site in sites:
            has = any(role in n.roles for n in site.nodes)
            if site.name == shared and not has:
                report(site.name, shared, missing=True)
            elif site.name != shared and has:
                report(site.name, shared, missing=False)

    def _identity_problem(self, site: str, shared: str, *, missing: bool) -> None:
        if missing:
            self.problem(
                ("sites", site, "nodes"),
                f"the shared identity site {shared!r} has no node with the keystone role; add one",
            )
        else:
            self.problem(
                ("sites", site, "nodes"),
                f"site {site!r} has keystone nodes but identity is shared at {shared!r}; move "
                "them there or change shared.identity.site",
            )

    def _dashboard_problem(self, site: str, shared: str, *, missing: bool) -> None:
        if missing:
            self.problem(
                ("shared", "dashboard", "site"),
                f"the shared dashboard site {shared!r} has no node with the horizon role; add "
                "one or remove shared.dashboard",
            )
        else:
            self.problem(
                ("sites", site, "nodes"),
                f"site {site!r} has horizon nodes but the dashboard is shared at {shared!r}; "
                "remove them or drop shared.dashboard",
            )

    # ---------------------------------------------------------------- method and policy

    def method_rules(self, upgrade: UpgradePath) -> None:
        """What the deployment method itself refuses (core/methods Method.check_inventory)."""
        from rollgate.core.methods import method

        method(self.spec.method).check_inventory(self.spec, upgrade.target, self.problem)

    def policy_limits(self, sites: list[Site]) -> None:
        total = sum(len(site.nodes) for site in sites)
        if total > self.spec.policy.max_hosts:
            self.problem(
                ("sites",),
                f"{total:,} nodes, more than policy.max_hosts ({self.spec.policy.max_hosts:,}); "
                "raise it if the cloud really has that many",
            )

    # ---------------------------------------------------------------- the recipe's changes

    def recipe_variables(self) -> None:
        """Every variable an inventory sets is one the method's recipe has, or one an
        overridden action of the inventory uses."""
        from rollgate.core.recipes import load_recipe, placeholders

        recipe = load_recipe(self.spec.method)
        places = self._override_places()
        used = {
            name
            for _, overrides, _ in places
            for run in (overrides.actions.values() if overrides else [])
            for name in placeholders(run or "")
        }
        for path, overrides, _ in places:
            for name in overrides.variables if overrides else {}:
                if name not in recipe.variables and name not in used:
                    self.problem(
                        (*path, "variables", name),
                        f"the {self.spec.method} recipe has no variable {name!r} and no "
                        f"overridden action uses it{suggest(name, sorted(recipe.variables))} "
                        f"(its variables: {', '.join(sorted(recipe.variables))})",
                    )

    def recipe_actions(self) -> None:
        """Every overridden action exists in the method's recipe, and every `{{placeholder}}`
        in it is a value the plan gives or a recipe variable."""
        from rollgate.core.methods import method
        from rollgate.core.recipes import PLAN_VALUES, load_recipe, placeholders

        spec = self.spec
        recipe = load_recipe(spec.method)
        plan_values = PLAN_VALUES | method(spec.method).plan_value_names
        cloud_variables = set(spec.recipe.variables) if spec.recipe else set()
        for path, overrides, site_variables in self._override_places():
            for key, run in (overrides.actions if overrides else {}).items():
                if key not in recipe.actions:
                    self.problem(
                        (*path, "actions", key),
                        f"the {spec.method} recipe has no action {key!r}"
                        f"{suggest(key, sorted(recipe.actions))}; see "
                        f"core/methods/{spec.method}/recipe.yaml",
                    )
                    continue
                base = recipe.actions[key]
                names = (
                    plan_values
                    | set(recipe.variables)
                    | cloud_variables
                    | site_variables
                    | set(placeholders(base.run) if base else [])
                )
                for name in placeholders(run or ""):
                    if name not in names:
                        self.problem(
                            (*path, "actions", key),
                            f"{{{{{name}}}}} is no value Rollgate knows"
                            f"{suggest(name, sorted(names))}; use a recipe variable "
                            f"(recipe.variables) or one of {', '.join(sorted(plan_values))}",
                        )

    def _override_places(self) -> list[tuple[Path, RecipeOverrides | None, set[str]]]:
        """Where an inventory changes the recipe: the cloud's and each site's, with the
        variables each sets."""
        spec = self.spec
        places: list[tuple[Path, RecipeOverrides | None, set[str]]] = [
            (("recipe",), spec.recipe, set(spec.recipe.variables) if spec.recipe else set())
        ]
        for name, site in spec.sites.items():
            variables = set(site.recipe.variables) if site.recipe else set()
            places.append((("sites", name, "recipe"), site.recipe, variables))
        return places

    # ---------------------------------------------------------------- the lab and the window

    def lab(self, sites: list[Site]) -> None:
        """A lab's faults parse, and its nodes are on loopback (the lab listens nowhere else)."""
        lab = self.spec.lab
        if lab is None:
            return
        from rollgate.core.faults import parse_faults

        node_names = {n.name for site in sites for n in site.nodes}
        for i, fault in enumerate(lab.faults):
            try:
                parse_faults([fault], node_names, {site.name for site in sites})
            except UserError as exc:
                self.problem(("lab", "faults", i), str(exc))
        for site in sites:
            off = next((n for n in site.nodes if not _is_loopback(n.address)), None)
            if off is not None:
                self.problem(
                    ("sites", site.name, "nodes"),
                    f"lab node {off.name} has address {off.address!r}: the lab only listens on "
                    "loopback addresses (127.x.y.z); use those, or remove the lab: section "
                    "to reach real machines",
                )

    def window(self) -> None:
        window = self.spec.window
        if window is None:
            return
        if (window.end is None) == (window.hours is None):
            self.problem(
                ("window",),
                "a window needs an end or hours (not both): e.g. {start: 2026-12-05T22:00Z, "
                "end: 2026-12-06T04:00Z} or {start: now, hours: 6}",
            )
        elif window.start == "now" and window.end is not None:
            self.problem(("window", "end"), "a window that starts now has hours, not an end")
        elif (
            isinstance(window.start, datetime)
            and window.end is not None
            and window.end <= window.start
        ):
            self.problem(
                ("window", "end"),
                f"the window ends ({window.end.isoformat()}) before it starts "
                f"({window.start.isoformat()}); swap or correct the times",
            )


def _valid_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(text)) and not text.replace(".", "").isdigit()


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _range_hint(address: str, count: int) -> str:
    head, _, last = address.rpartition(".")
    if head and last.isdigit():
        return f"{head}.[{last}:{int(last) + count - 1}]"
    return f"{address}[1:{count}]"
