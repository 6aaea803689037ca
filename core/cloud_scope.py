"""The cloud against the inventory: every service and agent a region's APIs list must be on a
host the inventory has, with a role the inventory gives it, or declared `unmanaged:`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollgate.core.executor import CommandResult

# The binaries nova's and cinder's services lists and neutron's agents list name, and the
# Rollgate role that upgrades each (neutron's L2 agent has one binary per mechanism driver).
ROLE_OF_BINARY: dict[str, str] = {
    "nova-compute": "nova-compute",
    "nova-conductor": "nova-conductor",
    "nova-scheduler": "nova-scheduler",
    "cinder-volume": "cinder-volume",
    "cinder-scheduler": "cinder-scheduler",
    "cinder-backup": "cinder-backup",
    "neutron-openvswitch-agent": "neutron-l2-agent",
    "neutron-linuxbridge-agent": "neutron-l2-agent",
    "neutron-sriov-nic-agent": "neutron-l2-agent",
    "ovn-controller": "neutron-l2-agent",
    "neutron-l3-agent": "neutron-l3-agent",
    "neutron-dhcp-agent": "neutron-dhcp-agent",
    "neutron-metadata-agent": "neutron-metadata-agent",
    "neutron-ovn-metadata-agent": "neutron-metadata-agent",
}

DECLARED = "not upgraded by Rollgate (declared: {reason})"


@dataclass(frozen=True)
class Declared:
    """An `unmanaged:` entry: a host (or some binaries of it) Rollgate leaves alone."""

    host: str
    reason: str
    binaries: tuple[str, ...] = ()  # empty: every service of the host

    def covers(self, binary: str) -> bool:
        return not self.binaries or binary in self.binaries


@dataclass
class Scope:
    """What a region lists beyond the inventory: blockers and what was declared."""

    blockers: list[str] = field(default_factory=list)  # "HOST BINARY (why)"
    declared: list[str] = field(default_factory=list)  # "HOST BINARY: not upgraded ..."


def compare(
    listed: Mapping[str, Iterable[str]],
    roles_of_host: Mapping[str, Iterable[str]],
    unmanaged: Iterable[Declared],
) -> Scope:
    """`listed`: {host: binaries} as the APIs list them; `roles_of_host`: the inventory's
    nodes of the site and their roles."""
    declared: dict[str, list[Declared]] = {}
    for entry in unmanaged:
        declared.setdefault(entry.host, []).append(entry)
    scope = Scope()
    for host in sorted(listed):
        roles = roles_of_host.get(host)
        for binary in sorted(listed[host]):
            role = ROLE_OF_BINARY.get(binary)
            if roles is not None and role is not None and role in roles:
                continue  # the inventory has it: upgraded by the plan
            found = next((d for d in declared.get(host, ()) if d.covers(binary)), None)
            if found is not None:
                scope.declared.append(f"{host} {binary}: {DECLARED.format(reason=found.reason)}")
            elif roles is None:
                scope.blockers.append(f"{host} {binary} (a host the inventory does not have)")
            elif role is None:
                scope.blockers.append(f"{host} {binary} (a service Rollgate has no role for)")
            else:
                scope.blockers.append(f"{host} {binary} (the inventory does not give it {role})")
    return scope


def blocker_text(region: str, blockers: list[str]) -> str:
    """One line: what the region lists beyond the inventory, and the two ways out."""
    shown = "; ".join(blockers[:10]) + (
        f"; and {len(blockers) - 10} more" if len(blockers) > 10 else ""
    )
    return (
        f"{region} lists {len(blockers)} service(s) the inventory does not upgrade: {shown}; "
        "add them to the inventory (rollgate discover prints the cloud as an inventory), or "
        "declare them under unmanaged: with a reason"
    )


def scope_result(
    region: str,
    listed: Mapping[str, Iterable[str]],
    roles_of_host: Mapping[str, Iterable[str]],
    args: Mapping[str, Any],
    out: Callable[[str, str], None],
) -> CommandResult:
    """The `verify-scope` step's answer (the API's listing and the lab's alike): declared
    services said one line each, then the count; anything else fails the step."""
    from rollgate.core.executor import CommandResult

    declared = [
        Declared(d["host"], d["reason"], tuple(d.get("binaries", ())))
        for d in args.get("unmanaged", ())
    ]
    found = compare(listed, roles_of_host, declared)
    for line in found.declared:
        out("info", line)
    services = sum(len(list(b)) for b in listed.values())
    extra = f", {len(found.declared)} declared unmanaged" if found.declared else ""
    out("info", f"{region} lists {services} services on {len(listed)} hosts{extra}")
    if found.blockers:
        return CommandResult(1, error=blocker_text(region, found.blockers))
    return CommandResult(0)
