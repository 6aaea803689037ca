"""kolla-ansible's names for Rollgate's roles: its images, its containers, its playbook tags."""

from __future__ import annotations

# role -> the kolla image that runs it (quay.io/openstack.kolla/<image>)
IMAGES = {
    "keystone": "keystone",
    "glance-api": "glance-api",
    "placement-api": "placement-api",
    "nova-conductor": "nova-conductor",
    "nova-scheduler": "nova-scheduler",
    "nova-api": "nova-api",
    "nova-compute": "nova-compute",
    "neutron-server": "neutron-server",
    "neutron-l2-agent": "neutron-openvswitch-agent",
    "neutron-l3-agent": "neutron-l3-agent",
    "neutron-dhcp-agent": "neutron-dhcp-agent",
    "neutron-metadata-agent": "neutron-metadata-agent",
    "cinder-scheduler": "cinder-scheduler",
    "cinder-volume": "cinder-volume",
    "cinder-backup": "cinder-backup",
    "cinder-api": "cinder-api",
    "horizon": "horizon",
}

# role -> its main container (the one its service's tools run in), as kolla-ansible names it
# (ansible/roles/<service>/defaults/main.yml container_name)
CONTAINERS = {role: image.replace("-", "_") for role, image in IMAGES.items()}

# Every container a role brings to a host, for the health check after an upgrade: a compute
# runs libvirt beside nova-compute, and Open vSwitch beside its L2 agent (E4: these moved
# with nothing when only `--tags nova` ran on computes).
HOST_CONTAINERS = {
    "nova-compute": ("nova_compute", "nova_libvirt"),
    "neutron-l2-agent": ("neutron_openvswitch_agent", "openvswitch_vswitchd"),
}
OVN_HOST_CONTAINERS = {
    "neutron-l2-agent": ("ovn_controller",),
    "neutron-metadata-agent": ("neutron_ovn_metadata_agent",),
}

# kolla's `neutron_plugin_agent` -> the tag of the play that upgrades the switch on each host
NETWORK_TAG = {"openvswitch": "openvswitch", "ovn": "ovn-controller"}

# A container's play tag, for the few not named after an OpenStack service
CONTAINER_TAGS = {
    "openvswitch_vswitchd": "openvswitch",
    "ovn_controller": "ovn-controller",
}

# kolla's site.yml plays that every host runs before any OpenStack service (common: fluentd,
# cron, kolla-toolbox), in site.yml's order
INFRA_TAGS = ("common", "loadbalancer", "mariadb", "memcached", "rabbitmq")


# kolla's services with an `enable_<name>` switch, in site.yml's order (ansible/site.yml's
# "Apply role" plays, less the infrastructure and network plays the plan runs itself): what
# globals.yml can turn on, each deployed (and upgraded) by the play of its name
SITE_ORDER = (
    "opensearch", "letsencrypt", "collectd", "valkey", "prometheus", "etcd", "keystone",
    "glance", "ironic", "cinder", "placement", "nova", "neutron", "heat", "horizon", "magnum",
    "mistral", "manila", "gnocchi", "ceilometer", "aodh", "barbican", "cyborg", "designate",
    "trove", "watcher", "grafana", "cloudkitty", "tacker", "octavia", "blazar", "masakari",
    "skyline",
)  # fmt: skip
# the projects Rollgate's roles upgrade (their plays run in the plan's own phases)
MODELLED_PROJECTS = frozenset(
    {"keystone", "glance", "placement", "nova", "neutron", "cinder", "horizon"}
)
# enable_<project> switches kolla turns on by default (enable_openstack_core); others are off
ON_BY_DEFAULT = frozenset({"keystone", "glance", "placement", "nova", "neutron", "horizon", "heat"})
# the main containers of projects Rollgate has no role for, on their hosts (the lab's)
EXTRA_CONTAINERS = {
    "heat": ("heat_api", "heat_engine"),
    "octavia": ("octavia_api", "octavia_worker"),
    "designate": ("designate_api", "designate_central"),
    "barbican": ("barbican_api", "barbican_worker"),
    "magnum": ("magnum_api", "magnum_conductor"),
}
# OVN's central databases and northd (kolla's ovn-db play), on the ovn-database hosts
OVN_DB_CONTAINERS = ("ovn_northd", "ovn_nb_db", "ovn_sb_db")


def ansible_bool(value: object, default: bool) -> bool:
    """An Ansible boolean as globals.yml writes it; a Jinja expression keeps the default."""
    text = str(value).strip().strip("'\"").lower()
    if isinstance(value, bool):
        return value
    if text in ("yes", "true", "1", "on"):
        return True
    if text in ("no", "false", "0", "off"):
        return False
    return default  # a Jinja expression: kolla's default decides


def enabled_services(settings: dict[str, object]) -> list[str]:
    """The services of SITE_ORDER globals.yml turns on (`enable_<name>`, kolla's defaults
    where it says nothing), sorted; enable_mariabackup and the like are not services."""
    on = set(ON_BY_DEFAULT)
    for key, value in settings.items():
        name = str(key).removeprefix("enable_")
        if str(key).startswith("enable_") and name in SITE_ORDER:
            if ansible_bool(value, name in ON_BY_DEFAULT):
                on.add(name)
            else:
                on.discard(name)
    return sorted(on)


def listed_services(text: str) -> list[str]:
    """recipe.variables.kolla_services as a sorted list ("a, b" or "a,b")."""
    return sorted({s.strip() for s in str(text).split(",") if s.strip()})


def host_containers(role: str, plugin: str = "openvswitch") -> tuple[str, ...]:
    """The containers `role` runs on a host, with kolla's neutron plugin `plugin`."""
    if plugin == "ovn" and role in OVN_HOST_CONTAINERS:
        return OVN_HOST_CONTAINERS[role]
    return HOST_CONTAINERS.get(role, (CONTAINERS[role],))


def container_tag(container: str, service: str) -> str:
    """The kolla-ansible tag whose play (re)creates `container`."""
    return CONTAINER_TAGS.get(container, service)
