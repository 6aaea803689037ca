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


def host_containers(role: str, plugin: str = "openvswitch") -> tuple[str, ...]:
    """The containers `role` runs on a host, with kolla's neutron plugin `plugin`."""
    if plugin == "ovn" and role in OVN_HOST_CONTAINERS:
        return OVN_HOST_CONTAINERS[role]
    return HOST_CONTAINERS.get(role, (CONTAINERS[role],))


def container_tag(container: str, service: str) -> str:
    """The kolla-ansible tag whose play (re)creates `container`."""
    return CONTAINER_TAGS.get(container, service)
