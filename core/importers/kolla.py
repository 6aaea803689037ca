"""`rollgate import kolla`: kolla-ansible's Ansible inventory (INI or YAML, the groups of its
own `multinode` example) and globals.yml, as a Rollgate inventory of the kolla method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rollgate.core.errors import UserError
from rollgate.core.importers import Imported, load_mapping
from rollgate.core.methods.kolla.ansible_inventory import read_ini, read_yaml
from rollgate.core.methods.kolla.mapping import MODELLED_PROJECTS, ansible_bool, enabled_services

# kolla's group -> the Rollgate role of the hosts in it (ansible/inventory/multinode: each
# service's group is a child of its project's, which is a child of control, network...)
GROUP_ROLES = {
    "keystone": "keystone",
    "glance-api": "glance-api",
    "placement-api": "placement-api",
    "nova-api": "nova-api",
    "nova-scheduler": "nova-scheduler",
    "nova-conductor": "nova-conductor",
    "compute": "nova-compute",  # nova-compute runs on `compute` (nova_cell_compute_group)
    "neutron-server": "neutron-server",
    "cinder-api": "cinder-api",
    "cinder-scheduler": "cinder-scheduler",
    "cinder-volume": "cinder-volume",
    "cinder-backup": "cinder-backup",
    "horizon": "horizon",
    "mariadb": "database",
    "rabbitmq": "rabbitmq",
    "memcached": "memcached",
    "loadbalancer": "haproxy",
    "deployment": "deployment",
}
OVS_AGENTS = {
    "neutron-dhcp-agent": "neutron-dhcp-agent",
    "neutron-l3-agent": "neutron-l3-agent",
    "neutron-metadata-agent": "neutron-metadata-agent",
}
OVN_GROUPS = {
    "ovn-controller": "neutron-l2-agent",
    "neutron-ovn-metadata-agent": "neutron-metadata-agent",
    "ovn-database": "ovsdb",
}
# the project whose enable_<project> turns a role's containers on
PROJECT = {
    "keystone": "keystone", "glance": "glance", "placement": "placement", "nova": "nova",
    "neutron": "neutron", "cinder": "cinder", "horizon": "horizon",
}  # fmt: skip


def read_inventory(path: Path) -> tuple[dict[str, set[str]], dict[str, dict[str, str]]]:
    text = path.read_text()
    if text.lstrip().startswith("[") or "\n[" in text:
        return read_ini(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: neither an INI nor a YAML Ansible inventory ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not an Ansible inventory (no groups)")
    return read_yaml(data)


def read_globals(path: Path | None) -> dict[str, Any]:
    return load_mapping(path, "a globals.yml (it holds no settings)") if path else {}


def import_kolla(multinode: Path, globals_path: Path | None) -> tuple[Imported, dict[str, Any]]:
    """The hosts of kolla's inventory with their Rollgate roles, and globals.yml's settings."""
    groups, host_vars = read_inventory(multinode)
    settings = read_globals(globals_path)
    plugin = str(settings.get("neutron_plugin_agent", "openvswitch"))
    services = enabled_services(settings)
    found = Imported()
    role_groups = dict(GROUP_ROLES)
    role_groups.update(OVN_GROUPS if plugin == "ovn" else OVS_AGENTS)
    for group, role in role_groups.items():
        project = role.split("-")[0]
        if project in PROJECT and PROJECT[project] not in services:
            continue  # globals.yml turns it off: kolla deploys nothing of it
        if role == "cinder-backup" and not ansible_bool(settings.get("enable_cinder_backup"), True):
            continue
        if group not in groups:
            if project in PROJECT or role == "deployment":
                found.unplaced.append(f"group {group}: not in {multinode.name}; kolla's "
                                      f"inventory defines it (its {role} hosts)")  # fmt: skip
            continue
        for host in groups[group]:
            found.add(host, role)
    if plugin != "ovn":  # kolla's neutron-openvswitch-agent: computes and the agents' hosts
        for group in ("compute", *OVS_AGENTS):
            for host in groups.get(group, ()):
                if "neutron" in services:
                    found.add(host, "neutron-l2-agent")
    for host, values in host_vars.items():
        if host not in found.hosts:
            continue
        if values.get("ansible_connection") == "local" or host == "localhost":
            found.addresses[host] = "127.0.0.1"
        elif "ansible_host" in values:
            found.addresses[host] = values["ansible_host"]
        if "ansible_user" in values:
            found.users[host] = values["ansible_user"]
    unused = sorted(groups["all"] - set(found.hosts))
    if unused:
        found.unplaced.append(f"hosts {', '.join(unused)}: in no group of a service Rollgate "
                              "upgrades (monitoring, storage without cinder ...); declared "
                              "unmanaged")  # fmt: skip
    for host in unused:
        found.bystanders[host] = ("in kolla's inventory with no service Rollgate upgrades; "
                                  "kolla-ansible's own runs move its containers")  # fmt: skip
    found.variables = {
        "neutron_plugin_agent": plugin,
        "container_engine": str(settings.get("kolla_container_engine", "docker")),
        "kolla_services": ",".join(services),
    }
    outside = [s for s in services if s not in MODELLED_PROJECTS]
    if outside:
        found.unplaced.append(
            f"services {', '.join(outside)}: enabled in globals.yml, outside Rollgate's roles; "
            "the plan upgrades them with kolla-ansible after the modelled ones"
        )
    return found, settings
