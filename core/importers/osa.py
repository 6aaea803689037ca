"""`rollgate import osa`: OpenStack-Ansible's openstack_user_config.yml (and conf.d/*.yml) host
groups, as a Rollgate inventory of the virtualenv method (OSA's layout: versioned
virtualenvs, systemd units)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollgate.core.errors import UserError
from rollgate.core.importers import Imported, load_mapping

# OSA's host group (openstack_user_config.yml, `<name>_hosts`; older releases wrote some with
# dashes) -> the Rollgate roles of its hosts (OSA's env.d maps each group to its containers)
GROUP_ROLES: dict[str, tuple[str, ...]] = {
    "identity": ("keystone",),
    "image": ("glance-api",),
    "placement_infra": ("placement-api",),
    "compute_infra": ("nova-api", "nova-scheduler", "nova-conductor"),
    # os-infra: the older umbrella of the API hosts (glance, nova's control plane, heat,
    # horizon)
    "os_infra": ("glance-api", "nova-api", "nova-scheduler", "nova-conductor", "horizon"),
    "compute": ("nova-compute", "neutron-l2-agent"),
    # network: the older single group (neutron-server and its agents together)
    "network": (
        "neutron-server",
        "neutron-l2-agent",
        "neutron-l3-agent",
        "neutron-dhcp-agent",
        "neutron-metadata-agent",
    ),
    "network_infra": ("neutron-server",),
    "network_agent": (
        "neutron-l2-agent",
        "neutron-l3-agent",
        "neutron-dhcp-agent",
        "neutron-metadata-agent",
    ),
    "network_gateway": ("neutron-l2-agent",),  # OVN gateway chassis: ovn-controller
    "network_northd": ("ovsdb",),
    "storage_infra": ("cinder-api", "cinder-scheduler"),
    "storage": ("cinder-volume",),
    "dashboard": ("horizon",),
    "shared_infra": ("database", "rabbitmq", "memcached"),
    "database": ("database",),
    "messaging": ("rabbitmq",),
    "load_balancer": ("haproxy",),
    "haproxy": ("haproxy",),
}
# groups of services Rollgate does not upgrade (said, not placed)
NOT_UPGRADED = ("repo_infra", "coordination", "log", "orchestration", "metering_infra",
                "metering_alarm", "metering_compute", "metrics", "key_manager", "dnsaas",
                "octavia_infra", "magnum", "swift_proxy", "swift", "ceph_mon", "ceph_osd",
                "unbound", "utility", "zookeeper")  # fmt: skip


def read_config(path: Path) -> dict[str, dict[str, Any]]:
    """Every `*_hosts` group of openstack_user_config.yml and of conf.d/*.yml beside it
    (OSA merges them: a group in both gets the hosts of both)."""
    files = [path, *sorted((path.parent / "conf.d").glob("*.yml"))]
    groups: dict[str, dict[str, Any]] = {}
    for file in files:
        for key, hosts in load_mapping(
            file, "an OpenStack-Ansible configuration (no host groups)"
        ).items():
            if not str(key).endswith("_hosts") or not isinstance(hosts, dict):
                continue
            name = str(key).removesuffix("_hosts").replace("-", "_")
            groups.setdefault(name, {}).update(hosts)
    return groups


def import_osa(path: Path) -> Imported:
    groups = read_config(path)
    found = Imported()
    if not groups:
        raise UserError(f"{path}: no host groups (`<name>_hosts:`) found; is it "
                        "openstack_user_config.yml?")  # fmt: skip
    for name, hosts in sorted(groups.items()):
        roles = GROUP_ROLES.get(name)
        if roles is None:
            why = ("a service Rollgate does not upgrade" if name in NOT_UPGRADED
                   else "a group Rollgate does not know")  # fmt: skip
            found.unplaced.append(f"group {name}_hosts ({', '.join(sorted(hosts))}): {why}")
            continue
        for host, values in hosts.items():
            for role in roles:
                found.add(str(host), role)
            ip = (values or {}).get("ip") if isinstance(values, dict) else None
            if ip:
                found.addresses[str(host)] = str(ip)
            elif str(host) not in found.addresses:
                found.unplaced.append(f"{host} ({name}_hosts): no ip; its name is used as the "
                                      "address")  # fmt: skip
    from rollgate.core.methods.venv.plan import DISTRIBUTIONS
    from rollgate.core.roles import INFRA_ROLES

    found.keep_only(
        set(DISTRIBUTIONS) | set(INFRA_ROLES),
        "the virtualenv method does not upgrade it (neutron's agents, horizon): upgrade it "
        "with openstack-ansible's own playbooks",
    )
    # OSA runs each service as a systemd unit from /openstack/venvs (the recipe's default)
    found.variables = {"service_manager": "systemd"}
    return found
