"""The roles a node can carry: which service and upgrade tier each belongs to. What installs and
runs a role is the deployment method's (core/methods/<method>/mapping)."""

from __future__ import annotations

from dataclasses import dataclass

# Upgrade tiers in the order of DOMAIN.md §1, after a method's own preparation (kolla: install
# the target's deployment tool, merge passwords, pull images), which can run before the
# maintenance window and which no role belongs to.
# First, each site's services are compared with the inventory (`scope`, reading only).
# A rollback (core/rollback.py) is a plan of one `rollback` phase per site, a run of its own.
# Last, the whole cloud is read back (every API, every program's running code): `verify`.
TIERS = ("scope", "prepare", "identity", "image", "compute", "block-storage", "dashboard", "verify",
         "rollback")  # fmt: skip


@dataclass(frozen=True)
class Role:
    """A service component a node runs, e.g. `nova-compute`."""

    name: str
    service: str  # the project whose database and status tool it uses: keystone, nova ...
    tier: str  # one of TIERS

    @property
    def data_plane(self) -> bool:
        """Roles that run on hypervisors and network hosts, upgraded in rolling batches."""
        return self.name == "nova-compute" or self.name in AGENT_ORDER


def _role(name: str, service: str, tier: str) -> Role:
    return Role(name, service, tier)


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        _role("keystone", "keystone", "identity"),
        _role("glance-api", "glance", "image"),
        _role("placement-api", "placement", "compute"),
        _role("nova-conductor", "nova", "compute"),
        _role("nova-scheduler", "nova", "compute"),
        _role("nova-api", "nova", "compute"),
        _role("nova-compute", "nova", "compute"),
        _role("neutron-server", "neutron", "compute"),
        _role("neutron-l2-agent", "neutron", "compute"),
        _role("neutron-l3-agent", "neutron", "compute"),
        _role("neutron-dhcp-agent", "neutron", "compute"),
        _role("neutron-metadata-agent", "neutron", "compute"),
        _role("cinder-scheduler", "cinder", "block-storage"),
        _role("cinder-volume", "cinder", "block-storage"),
        _role("cinder-backup", "cinder", "block-storage"),
        _role("cinder-api", "cinder", "block-storage"),
        _role("horizon", "horizon", "dashboard"),
    )
}

# Roles Rollgate knows that belong to no OpenStack service: infrastructure, and `deployment`,
# the host a method's tool runs on (kolla's deploy host, its group of that name).
INFRA_ROLES = frozenset({"database", "rabbitmq", "memcached", "haproxy", "ovsdb", "deployment"})

# Neutron agents restart in this order inside a host's batch: L2 first, then the rest.
AGENT_ORDER = (
    "neutron-l2-agent",
    "neutron-l3-agent",
    "neutron-dhcp-agent",
    "neutron-metadata-agent",
)

# An API role's service type in the catalog: after its restart the site's API must answer
API_SERVICE_TYPES = {
    "keystone": "identity",
    "glance-api": "image",
    "placement-api": "placement",
    "nova-api": "compute",
    "neutron-server": "network",
    "cinder-api": "block-storage",
}

# Roles that report through a service record (nova's and cinder's services lists): after a
# restart, a heartbeat written after it is the proof the new process runs
HEARTBEAT_ROLES = frozenset(
    {"nova-conductor", "nova-scheduler", "nova-compute", "cinder-scheduler", "cinder-volume",
     "cinder-backup"}
)  # fmt: skip
