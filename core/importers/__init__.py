"""Inventories operators already keep (kolla-ansible's, OpenStack-Ansible's), as Rollgate's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollgate.core.cloud_scope import ROLE_OF_BINARY
from rollgate.core.errors import UserError
from rollgate.core.releases import CATALOGUE, Release, ReleaseError, find_release
from rollgate.core.roles import ROLES

# the order roles are written in (the tiers', then infrastructure)
ROLE_ORDER = [*ROLES, "database", "rabbitmq", "memcached", "haproxy", "ovsdb", "deployment"]


@dataclass
class Imported:
    """Hosts with their roles and addresses, and what could not be placed, and why."""

    hosts: dict[str, set[str]] = field(default_factory=dict)  # host -> roles
    addresses: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # host -> its SSH user, where given
    unplaced: list[str] = field(default_factory=list)  # "group X: why"
    variables: dict[str, str] = field(default_factory=dict)  # the method recipe's variables
    left_out: dict[str, set[str]] = field(default_factory=dict)  # host -> roles not upgraded
    why_left_out: str = ""
    bystanders: dict[str, str] = field(default_factory=dict)  # host -> why it has no roles

    def add(self, host: str, role: str) -> None:
        self.hosts.setdefault(host, set()).add(role)

    def keep_only(self, allowed: set[str], why: str) -> None:
        """Leave out the roles the method cannot upgrade; each host's are declared unmanaged
        (by the binaries the APIs list for them) with `why`."""
        self.why_left_out = why
        for host in list(self.hosts):
            dropped = self.hosts[host] - allowed
            if dropped:
                self.left_out.setdefault(host, set()).update(dropped)
                self.hosts[host] -= dropped
            if not self.hosts[host]:
                del self.hosts[host]


def releases(source: str | None, target: str | None, skip_level: bool) -> tuple[Release, Release]:
    """`--from` and `--to`; `--to` defaults to the next release, or with --skip-level to the
    next SLURP release."""
    if source is None:
        raise UserError("the source release is not known: give --from RELEASE")
    try:
        start = find_release(source)
        if target is not None:
            return start, find_release(target)
    except ReleaseError as exc:
        raise UserError(str(exc)) from None
    later = list(CATALOGUE[start.index + 1 :])
    if skip_level:
        if not start.slurp:
            raise UserError(f"--skip-level: {start.label} is not a SLURP release; upgrade to the "
                            "next release instead (drop --skip-level)")  # fmt: skip
        later = [r for r in later if r.slurp]
    if not later:
        raise UserError(f"no release after {start.label} is known: give --to RELEASE")
    return start, later[0]


def inventory_text(
    found: Imported,
    *,
    cloud: str,
    method: str,
    site: str,
    region: str,
    upgrade: tuple[Release, Release],
    header: list[str],
) -> str:
    """The Rollgate inventory (YAML with comments) of one site of `found`'s hosts."""
    if not found.hosts:
        raise UserError("no host could be placed: " + "; ".join(found.unplaced or ["no hosts"]))
    users = set(found.users.values())
    nodes = []
    for host in sorted(found.hosts):
        roles = sorted(found.hosts[host], key=ROLE_ORDER.index)
        node: dict[str, Any] = {
            "name": host,
            "address": found.addresses.get(host, host),
            "roles": roles,
        }
        if len(users) > 1 and host in found.users:
            node["ssh"] = {"user": found.users[host]}
        nodes.append(node)
    data: dict[str, Any] = {
        "cloud": cloud,
        "upgrade": {"from": upgrade[0].id, "to": upgrade[1].id},
        "method": method,
        "ssh": {"become": True, **({"user": users.pop()} if len(users) == 1 else {})},
        "shared": {"identity": {"site": site}},
        "sites": {site: {"region": region, "nodes": nodes}},
    }
    unmanaged = []
    for host in sorted(found.left_out):
        binaries = sorted(b for b, r in ROLE_OF_BINARY.items() if r in found.left_out[host])
        if binaries:
            unmanaged.append({"host": host, "binaries": binaries, "reason": found.why_left_out})
        said = ", ".join(sorted(found.left_out[host], key=ROLE_ORDER.index))
        found.unplaced.append(f"{host}: {said}: {found.why_left_out}")
    for host, why in sorted(found.bystanders.items()):
        unmanaged.append({"host": host, "reason": why})
    if unmanaged:
        data["sites"][site]["unmanaged"] = unmanaged
    if found.variables:
        data["recipe"] = {"variables": dict(sorted(found.variables.items()))}
    lines = [f"# {line}" for line in header]
    lines += [f"# not placed: {why}" for why in found.unplaced]
    return (
        "\n".join(lines)
        + "\n"
        + yaml.safe_dump(data, sort_keys=False, width=100, default_flow_style=None)
    )


def slug(text: str, fallback: str) -> str:
    """A name the inventory accepts (letters, digits, . _ -), from a region's or a folder's."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or fallback


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (globals.yml, openstack_user_config.yml)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not {what}")
    return data
